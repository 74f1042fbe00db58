"""Workflow links on the task page and ``/api/tasks/<id>``, from a real chain, group and chord run by
a worker: parent / children, a chain's previous and next step, a group's and a chord's members and
the chord body, the root; and the bounds of the link index (capped with the task ids, TTL)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from celeriac import Celeriac, chain, chord, group
from celeriac.dashboard import create_app
from celeriac.monitor import MonitorReader
from celeriac.monitor.keys import monitor_keys

pytestmark = pytest.mark.redis


def wait_recorded(client: redis.Redis, ids: list[str], timeout_s: float = 20) -> None:
    reader = MonitorReader(client)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(reader.task(i, ["default"]) for i in ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"not all recorded: {ids}")


@pytest.fixture
def tasks(app: Celeriac) -> Any:
    @app.task(name="wf.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="wf.tsum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    return add, tsum


def test_chain_links_previous_and_next_both_ways(
    app: Celeriac, client: redis.Redis, thread_worker: Any, tasks: Any
) -> None:
    add, _ = tasks
    thread_worker(app, concurrency=2)
    res = chain(add.s(1, 2), add.s(10), add.s(100)).delay()
    assert res.get(timeout=20) == 113
    third = res.id
    second = res.parent.id
    first = res.parent.parent.id
    wait_recorded(client, [first, second, third])
    c = TestClient(create_app(app))
    w1 = c.get(f"/api/tasks/{first}").json()["workflow"]
    assert w1["parent_id"] is None and w1["next_ids"] == [second]
    assert [x["id"] for x in w1["children"]] == [second]  # the next step names it as its parent
    w2 = c.get(f"/api/tasks/{second}").json()["workflow"]
    assert w2["parent_id"] == first and w2["root_id"] == first and w2["next_ids"] == [third]
    assert [x["id"] for x in w2["children"]] == [third]
    w3 = c.get(f"/api/tasks/{third}").json()["workflow"]
    assert w3["parent_id"] == second and w3["root_id"] == first and w3["next_ids"] == []
    html = c.get(f"/tasks/{second}").text
    assert "Workflow" in html
    for tid in (first, third):
        assert f'href="/tasks/{tid}"' in html


def test_group_and_chord_members_and_body(
    app: Celeriac, client: redis.Redis, thread_worker: Any, tasks: Any
) -> None:
    add, tsum = tasks
    thread_worker(app, concurrency=4)
    g = group(add.s(i, i) for i in range(3)).delay()
    assert g.get(timeout=20) == [0, 2, 4]
    c_res = chord((add.s(i, 1) for i in range(4)), tsum.s()).delay()
    assert c_res.get(timeout=20) == 10
    group_ids = [r.id for r in g.results]
    header_ids = [r.id for r in c_res.parent.results]
    chord_id = c_res.parent.id
    wait_recorded(client, [*group_ids, *header_ids, c_res.id])
    c = TestClient(create_app(app))

    member = c.get(f"/api/tasks/{group_ids[1]}").json()["workflow"]
    assert member["group"]["id"] == g.id and member["group"]["index"] == 1
    assert [m["id"] for m in member["group"]["members"]] == group_ids  # in member order
    assert member["group"]["count"] == 3
    # the group's own id: no task ran under it, its page lists its members
    as_group = c.get(f"/api/tasks/{g.id}").json()
    assert as_group["timeline"] == [] and [m["id"] for m in as_group["workflow"]["members"]] == group_ids
    assert c.get(f"/tasks/{g.id}").status_code == 200

    head = c.get(f"/api/tasks/{header_ids[2]}").json()["workflow"]
    assert head["chord"]["id"] == chord_id and head["chord"]["index"] == 2
    assert [m["id"] for m in head["chord"]["members"]] == header_ids
    assert head["chord"]["body_ids"] == [c_res.id]  # the body, linked from every header member
    body = c.get(f"/api/tasks/{c_res.id}").json()["workflow"]
    assert body["body_of"]["id"] == chord_id
    assert [m["id"] for m in body["body_of"]["members"]] == header_ids and body["body_of"]["count"] == 4
    html = c.get(f"/tasks/{c_res.id}").text
    assert "body of chord" in html and all(f'href="/tasks/{i}"' in html for i in header_ids)
    assert "chord body" in c.get(f"/tasks/{header_ids[0]}").text

    # a plain task has no workflow section and writes no link
    plain = add.delay(5, 5)
    wait_recorded(client, [plain.id])
    assert c.get(f"/api/tasks/{plain.id}").json()["workflow"] is None


def test_link_index_is_bounded_and_expires(app: Celeriac, client: redis.Redis, thread_worker: Any) -> None:
    app.conf.monitor_max_entries = 50

    @app.task(name="wf.one")
    def one(i: int) -> int:
        return i

    thread_worker(app, concurrency=4)
    g = group(one.s(i) for i in range(300)).delay()
    assert len(g.get(timeout=30)) == 300
    k = monitor_keys("celeriac", "default")
    deadline = time.monotonic() + 20
    reader = MonitorReader(client)
    while reader.sizes(["default"])["default"][0] < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the last batches are written
    assert client.zcard(k.rel) <= 50 + 1000 and client.zcard(k.relt) == client.zcard(k.rel)
    assert client.zcard(k.rel) <= reader.sizes(["default"])["default"][0] * 2  # trimmed with the log
    assert client.ttl(k.rel) > 0 and client.ttl(k.relt) > 0
