"""The dashboard at scale: every page and API answer timed over HTTP, the dashboard's RSS, and 20
concurrent clients, on a dataset built through the workers' own write path.

    .venv/bin/python benchmarks/monitoring/dashboard.py                      # 1M finished, 500k queued
    .venv/bin/python benchmarks/monitoring/dashboard.py --finished 1000 --queued 1000
    .venv/bin/python benchmarks/monitoring/dashboard.py --concurrent-s 60 --json out.json

Dataset: ``--finished`` outcomes (1 % failed, with traceback and arguments) over 4 queues and 20
task names, ``--queued`` messages waiting (bulk send), 10,000 dead letters, 20 live workers. The
dashboard runs in its own process (uvicorn, as ``celeriac dashboard`` runs it) on a private Redis.
Each endpoint gets ``--requests`` sequential requests on one keep-alive connection after 5 warm-up
requests; latency is client-side (loopback HTTP included). RSS is the dashboard process's, read from
/proc after the warm-up and after everything.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

SERVER = r"""
import sys, uvicorn
from celeriac import Celeriac
from celeriac.dashboard import create_app
app = Celeriac("bench", broker=sys.argv[1])
uvicorn.run(create_app(app), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""

QUEUES = ["default", "emails", "reports", "billing"]
NAMES = [f"shop.tasks.t{i}" for i in range(20)]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build(url: str, finished: int, queued: int) -> dict[str, Any]:
    import redis

    from celeriac import Celeriac, Signature
    from celeriac.testing.outcomes import fill_outcomes

    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    sample = fill_outcomes(client, finished, queues=QUEUES, names=NAMES, failed_every=100)
    t_fill = time.perf_counter() - t0
    app = Celeriac("bench", broker=url)
    t0 = time.perf_counter()
    for start in range(0, queued, 100_000):
        n = min(100_000, queued - start)
        app.send_many([Signature(NAMES[i % 20], (i,), app=app) for i in range(n)])
    t_send = time.perf_counter() - t0
    pipe = client.pipeline(transaction=False)
    now_ms = int(time.time() * 1000)
    for i in range(10_000):
        pipe.xadd(
            "celeriac:{emails}:dead",
            {"m": b"\x00bad", "reason": f"max retries (3) exceeded: {i}", "time": now_ms},
        )
    for i in range(20):
        key = f"celeriac:worker:bench-{i}"
        tasks = json.dumps([[f"task-{i}-{j}", NAMES[j], time.time()] for j in range(5)])
        pipe.hset(
            key,
            mapping={
                "hostname": "bench",
                "pid": str(i),
                "queues": ",".join(QUEUES),
                "pool": "asyncio",
                "concurrency": "100",
                "running": "5",
                "processed": "1000",
                "failed": "10",
                "rss_kb": "51200",
                "tasks": tasks,
                "version": "bench",
                "started_at": str(time.time()),
            },
        )
        pipe.expire(key, 3600)
        pipe.zadd("celeriac:workers", {f"bench-{i}": now_ms + 3_600_000})
    pipe.sadd("celeriac:queues", *QUEUES)
    pipe.execute()
    t0 = time.perf_counter()
    periodic(app, client, PERIODIC)
    t_periodic = time.perf_counter() - t0
    # a cursor at the oldest recorded outcome: the "millionth page"
    oldest = client.xrange("celeriac:{default}:m:log", count=1)[0][0].decode()
    info = client.info("memory")
    return {
        "sample": sample,
        "fill_s": round(t_fill, 1),
        "send_s": round(t_send, 1),
        "periodic_s": round(t_periodic, 1),
        "deep_cursor": f"{oldest}.5.default",
        "redis_used_memory_mb": round(info["used_memory"] / 1e6),
    }


def periodic(app: Any, client: Any, n: int) -> None:
    """``n`` periodic entries (as `celeriac beat add` stores them, without a scheduler), 20 rate
    limits set at run time and one paused queue: what /periodic and /limits read."""
    import dataclasses

    from celeriac.beat.entries import make_entry, pack_entry
    from celeriac.beat.store import BeatKeys

    keys = BeatKeys(app.broker.keys)
    template = make_entry(app, "e0", {"task": NAMES[0], "schedule": 60.0}, check_task=False)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        entry = dataclasses.replace(template, name=f"e{i:06d}", queue=QUEUES[i % len(QUEUES)])
        pipe.hset(keys.entries, entry.name, pack_entry(entry))
        pipe.hset(keys.state(entry.queue), f"d:{entry.name}", entry.digest)
        if i % 10_000 == 9_999:
            pipe.execute()
    for name in NAMES:
        pipe.hset("celeriac:flow", f"rate:{name}", "100/s")
    pipe.hset("celeriac:flow", "paused:billing", "1")
    pipe.execute()


#: periodic entries of the dataset (the admin pages' scale bar is 200k entries)
PERIODIC = 200_000


def endpoints(data: dict[str, Any]) -> list[tuple[str, str]]:
    deep = data["deep_cursor"]
    return [
        ("overview (hour)", "/"),
        ("overview (day)", "/?window=day"),
        ("overview (week)", "/?window=week"),
        ("queues", "/queues"),
        ("workers", "/workers"),
        ("tasks, first page", "/tasks"),
        ("tasks, deepest page (cursor)", f"/tasks?cursor={deep}"),
        ("tasks, state=FAILURE", "/tasks?state=FAILURE"),
        ("tasks, queue=reports", "/tasks?queue=reports"),
        ("tasks, name filter", "/tasks?name=shop.tasks.t7"),
        ("task by id (page)", "/tasks/{id}"),
        ("failures", "/failures"),
        ("dead letters", "/dead-letters?queue=emails"),
        ("api/overview", "/api/overview"),
        ("api/queues", "/api/queues"),
        ("api/workers", "/api/workers"),
        ("api/tasks", "/api/tasks"),
        ("api/tasks deepest (cursor)", f"/api/tasks?cursor={deep}"),
        ("api/tasks/<id> (lookup)", "/api/tasks/{id}"),
        ("api/failures", "/api/failures"),
        ("api/series week", "/api/series?window=week"),
        ("api/dead-letters", "/api/dead-letters/emails"),
        ("metrics", "/metrics"),
        ("periodic (200k entries)", "/periodic"),
        ("periodic, name search", "/periodic?name=e123456"),
        ("api/periodic", "/api/periodic"),
        ("limits", "/limits"),
        ("api/limits", "/api/limits"),
    ]


def timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return (time.perf_counter() - t0) * 1000, r.status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finished", type=int, default=1_000_000)
    ap.add_argument("--queued", type=int, default=500_000)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--concurrent-s", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from celeriac.testing import RedisServer, free_port

    with RedisServer() as srv:
        data = build(srv.url, args.finished, args.queued)
        print(
            f"dataset: {args.finished:,} finished in {data['fill_s']} s, {args.queued:,} queued in "
            f"{data['send_s']} s; Redis used_memory {data['redis_used_memory_mb']} MB",
            flush=True,
        )
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", SERVER, srv.url, str(port)], env={**os.environ})
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    timed(conn, "/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            rng = random.Random(1)
            results = []
            rss_start = None
            for label, path in endpoints(data):
                lat = []
                for i in range(5 + args.requests):
                    p = path.replace("{id}", rng.choice(data["sample"]))
                    ms, status = timed(conn, p)
                    if status != 200:
                        raise SystemExit(f"{p}: HTTP {status}")
                    if i >= 5:
                        lat.append(ms)
                if rss_start is None:
                    rss_start = rss_mb(proc.pid)
                lat.sort()
                row = {
                    "endpoint": label,
                    "p50_ms": round(statistics.median(lat), 1),
                    "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
                    "max_ms": round(lat[-1], 1),
                }
                results.append(row)
                print(
                    f"{label:32} p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms  max {row['max_ms']:6.1f} ms",
                    flush=True,
                )
            rss_after_seq = rss_mb(proc.pid)
            # 20 concurrent clients, each cycling through every endpoint, for --concurrent-s seconds
            paths = [p for _, p in endpoints(data)]
            stop = time.monotonic() + args.concurrent_s
            counts = {"ok": 0, "errors": 0}
            lat_all: list[float] = []
            lock = threading.Lock()

            def client(seed: int) -> None:
                r = random.Random(seed)
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                i = seed
                while time.monotonic() < stop:
                    p = paths[i % len(paths)].replace("{id}", r.choice(data["sample"]))
                    i += 1
                    try:
                        ms, status = timed(c, p)
                        ok = status == 200
                    except Exception:
                        ok, ms = False, 0.0
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    with lock:
                        counts["ok" if ok else "errors"] += 1
                        if ok:
                            lat_all.append(ms)

            threads = (
                [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
                if args.concurrent_s
                else []
            )
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            lat_all.sort()
            conc = {
                "clients": args.clients,
                "seconds": args.concurrent_s,
                "requests": counts["ok"] + counts["errors"],
                "errors": counts["errors"],
                "p50_ms": round(statistics.median(lat_all), 1) if lat_all else None,
                "p95_ms": round(lat_all[int(0.95 * (len(lat_all) - 1))], 1) if lat_all else None,
            }
            rss_end = rss_mb(proc.pid)
            print(f"concurrent: {conc}")
            print(
                f"dashboard RSS: {rss_start:.1f} MB after the first endpoint, {rss_after_seq:.1f} MB after all, "
                f"{rss_end:.1f} MB after the concurrent run"
            )
            out = {
                "finished": args.finished,
                "queued": args.queued,
                "dataset": {k: v for k, v in data.items() if k != "sample"},
                "endpoints": results,
                "worst_p95_ms": max(r["p95_ms"] for r in results),
                "concurrent": conc,
                "rss_mb": {
                    "first": round(rss_start or 0, 1),
                    "sequential": round(rss_after_seq, 1),
                    "end": round(rss_end, 1),
                },
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "load_average": os.getloadavg(),
            }
            print(json.dumps({k: out[k] for k in ("worst_p95_ms", "rss_mb", "concurrent")}))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(out, f, indent=1)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
