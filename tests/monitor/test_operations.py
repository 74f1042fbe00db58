"""The periodic-entry and limits pages: what they show, the admin actions (pause / resume / run now
an entry, pause / resume a queue) with roles and CSRF, and the periodic list at 200,000 entries."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
import redis
from starlette.requests import Request
from starlette.testclient import TestClient

from celeriac import Celeriac
from celeriac.beat import Beat
from celeriac.beat.entries import make_entry, pack_entry
from celeriac.beat.store import BeatKeys
from celeriac.dashboard import Policy, create_app

pytestmark = pytest.mark.redis


class ReadOnly(Policy):
    def role(self, request: Request) -> Any:
        return "read"


def test_periodic_page_pause_resume_run_now(app: Celeriac) -> None:
    @app.task(name="rep.daily")
    def daily(kind: str) -> str:
        return kind

    beat = Beat(app)
    beat.add("nightly <b>report</b>", "rep.daily", 3600.0, args=("full",), catch_up="skip")
    beat.add("every-minute", "rep.daily", 60.0, args=("short",), options={"queue": "reports"})
    c = TestClient(create_app(app))
    html = c.get("/periodic").text
    assert "every-minute" in html and "nightly &lt;b&gt;report&lt;/b&gt;" in html  # escaped
    assert "<b>report</b>" not in html
    got = c.get("/api/periodic").json()
    assert got["total"] == 2 and got["next_cursor"] is None
    by = {e["name"]: e for e in got["entries"]}
    assert by["nightly <b>report</b>"]["catch_up"] == "skip"
    assert by["every-minute"]["queue"] == "reports" and by["every-minute"]["paused"] is False
    assert by["every-minute"]["next_run_ms"] is not None

    r = c.post("/api/periodic/every-minute/pause")
    assert r.status_code == 200 and r.json()["message"] == "every-minute: paused"
    assert c.get("/api/periodic/every-minute").json()["paused"] is True
    assert beat.get("every-minute").paused
    assert "Resume" in c.get("/periodic?name=every-minute").text
    r = c.post("/periodic/every-minute/resume", follow_redirects=False)  # the page's form
    assert r.status_code == 303 and "resumed" in r.headers["location"]
    assert not beat.get("every-minute").paused

    before = app.broker.stats("default").ready
    r = c.post(f"/api/periodic/{'nightly <b>report</b>'}/run-now")
    assert r.status_code == 200 and "sent now as task" in r.json()["message"]
    assert app.broker.stats("default").ready == before + 1
    assert c.post("/api/periodic/nope/pause").status_code == 404
    assert c.get("/api/periodic/nope").status_code == 404

    # read-only: no buttons, actions refused; a cross-site POST is refused by the default policy
    ro = TestClient(create_app(app, policy=ReadOnly()))
    assert "Run now" not in ro.get("/periodic").text
    assert ro.post("/api/periodic/every-minute/pause").status_code == 403
    assert (
        c.post("/api/periodic/every-minute/pause", headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    assert not beat.get("every-minute").paused


def test_periodic_page_at_200k_entries(app: Celeriac, client: redis.Redis) -> None:
    n = 200_000
    template = make_entry(app, "e000000", {"task": "rep.tick", "schedule": 30.0}, check_task=False)
    keys = BeatKeys(app.broker.keys)  # type: ignore[attr-defined]
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        entry = dataclasses.replace(template, name=f"e{i:06d}")
        pipe.hset(keys.entries, entry.name, pack_entry(entry))
        pipe.hset(keys.state("default"), f"d:{entry.name}", entry.digest)  # as `beat add` registers it
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    c = TestClient(create_app(app))

    seen: set[str] = set()
    cursor = ""
    for _ in range(3):  # cursor paging: each page one HSCAN call (a hint of `limit` entries)
        got = c.get(f"/api/periodic?limit=100&cursor={cursor}").json()
        assert got["total"] == n and 1 <= len(got["entries"]) <= 200
        names = {e["name"] for e in got["entries"]}
        assert not names & seen
        seen |= names
        cursor = got["next_cursor"]
        assert cursor
    assert c.get("/periodic?limit=100").status_code == 200

    exact = c.get("/api/periodic?name=e123456").json()["entries"]
    assert [e["name"] for e in exact] == ["e123456"]
    found: set[str] = set()
    cursor, calls = "", 0
    while True:  # a glob scans in bounded steps; following the cursor finds every match
        got = c.get(f"/api/periodic?name=e19999*&cursor={cursor}&limit=500").json()
        calls += 1
        found |= {e["name"] for e in got["entries"]}
        cursor = got["next_cursor"]
        if not cursor:
            break
    assert found == {f"e19999{d}" for d in range(10)} and calls <= 10
    assert c.post("/api/periodic/e123456/pause").json()["message"] == "e123456: paused"
    page = c.get("/periodic?name=e123456").text
    assert "paused" in page and "Resume" in page


def test_limits_page_holders_parked_rates_and_queue_pause(app: Celeriac, thread_worker: Any) -> None:
    release = threading.Event()

    @app.task(name="lim.slow", max_concurrency=1)
    def slow(i: int) -> int:
        release.wait(20)
        return i

    @app.task(name="lim.api", rate_limit="10/m")
    def api() -> None:
        pass

    app.control.rate_limit("lim.api", "5/s")
    first, second = slow.delay(1), slow.delay(2)
    w = thread_worker(app, concurrency=2)
    c = TestClient(create_app(app))
    deadline = time.monotonic() + 20
    while True:
        (row,) = c.get("/api/limits").json()["concurrency"]
        if (row["holding"] == 1 and row["waiting"] == 1) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row["task"] == "lim.slow" and row["limit"] == 1 and row["queue"] == "default"
    assert row["holding"] == 1 and row["waiting"] == 1
    (holder,) = row["holders"]
    assert holder["task_id"] in (first.id, second.id) and holder["task_name"] == "lim.slow"
    html = c.get("/limits").text
    assert holder["task_id"] in html and "1 / 1" in html
    rates = {r["task"]: r for r in c.get("/api/limits").json()["rates"]}
    assert rates["lim.api"]["declared"] == "10/m" and rates["lim.api"]["set_at_run_time"] == "5/s"
    assert rates["lim.api"]["effective"] == "5/s"
    release.set()
    w.wait_outcomes(lambda o: len(o) >= 2)

    r = c.post("/api/queues/default/pause")
    assert r.status_code == 200 and r.json()["message"] == "queue default paused"
    queues = {q["queue"]: q["paused"] for q in c.get("/api/limits").json()["queues"]}
    assert queues["default"] is True
    assert "Resume" in c.get("/limits").text
    assert app.control.paused_queues() == {"default"}  # type: ignore[attr-defined]
    ro = TestClient(create_app(app, policy=ReadOnly()))
    assert ro.post("/api/queues/default/resume").status_code == 403
    r = c.post("/queues/default/resume", follow_redirects=False)
    assert r.status_code == 303 and not app.control.paused_queues()  # type: ignore[attr-defined]
    w.stop()
