"""Every page and API answer renders correctly with 250,000 recorded outcomes, 20,000 dead letters and
100 live workers (correctness at scale; timings are measured in benchmarks/monitoring/)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from celeriac import Celeriac, Signature
from celeriac.dashboard import create_app
from celeriac.testing.outcomes import fill_outcomes

pytestmark = [pytest.mark.redis, pytest.mark.slow]

N = 250_000
QUEUES = ["default", "emails"]
NAMES = [f"shop.task{i}" for i in range(20)]


@pytest.fixture
def big(app: Celeriac, client: redis.Redis) -> dict[str, Any]:
    sample = fill_outcomes(client, N, queues=QUEUES, names=NAMES, failed_every=100)
    pipe = client.pipeline(transaction=False)
    now_ms = int(time.time() * 1000)
    for i in range(20_000):  # dead letters as settle.lua writes them
        pipe.xadd("celeriac:{emails}:dead", {"m": b"\x00bad", "reason": f"reason {i} <b>", "time": now_ms})
    for i in range(100):  # live workers as their heartbeat writes them
        key = f"celeriac:worker:w{i}"
        tasks = json.dumps([[f"t{i}", "shop.task1", time.time()]])
        pipe.hset(
            key,
            mapping={
                "queues": "default,emails",
                "pool": "asyncio",
                "concurrency": "100",
                "running": "1",
                "rss_kb": "40000",
                "tasks": tasks,
                "version": "x",
            },
        )
        pipe.expire(key, 60)
        pipe.zadd("celeriac:workers", {f"w{i}": now_ms + 60_000})
    pipe.sadd("celeriac:queues", *QUEUES)
    pipe.execute()
    app.send_many([Signature("shop.task1", (i,), app=app) for i in range(1000)])
    return {"sample": sample}


def test_every_page_at_scale(app: Celeriac, client: redis.Redis, big: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    queues = {q["name"]: q for q in c.get("/api/queues").json()["queues"]}
    assert queues["default"]["ready"] == 1000 and queues["emails"]["dead"] == 20_000
    assert queues["default"]["recorded"] + queues["emails"]["recorded"] == N
    assert queues["default"]["oldest_age_s"] is not None
    assert len(c.get("/api/workers").json()["workers"]) == 100
    for path in [
        "/",
        "/?window=week",
        "/queues",
        "/workers",
        "/tasks",
        "/tasks?state=FAILURE",
        "/failures",
        "/dead-letters?queue=emails",
        "/tasks?name=shop.task7",
        "/metrics",
    ]:
        assert c.get(path).status_code == 200, path
    # the failures are counted exactly, grouped by name
    groups = c.get("/api/failures").json()["groups"]
    assert sum(g["count"] for g in groups) == N // 100
    # walk the whole log, 500 at a time: every outcome exactly once, newest first
    seen: set[str] = set()
    cursor = ""
    pages = 0
    last_key = None
    while True:
        page = c.get(f"/api/tasks?limit=500&cursor={cursor}").json()
        for t in page["tasks"]:
            entry, _, queue = t["cursor"].split(".", 2)
            key = (*(int(x) for x in entry.split("-")), queue)
            if last_key is not None:
                assert key <= last_key
            last_key = key
            seen.add(t["id"])
        pages += 1
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == N and pages == N // 500
    # the failures index pages through all failures
    failed = 0
    cursor = ""
    while True:
        page = c.get(f"/api/tasks?state=FAILURE&limit=500&cursor={cursor}").json()
        failed += len(page["tasks"])
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert failed == N // 100
    # lookups by id, anywhere in the log
    for tid in big["sample"][:: len(big["sample"]) // 10]:
        assert c.get(f"/api/tasks/{tid}").json()["latest"]["id"] == tid
    # dead letters page through 20,000
    after, n = "", 0
    while True:
        got = c.get(f"/api/dead-letters/emails?limit=500&after={after}").json()
        n += len(got["dead_letters"])
        if not got["next_after"]:
            break
        after = got["next_after"]
    assert n == 20_000
    assert "&lt;b&gt;" in c.get("/dead-letters?queue=emails").text
