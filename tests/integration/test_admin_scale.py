"""Every admin command on a 200,000-deep queue and a dead-letter stream at its cap, through the real
``celeriac`` program against a real Redis: admin commands are needed most when a queue is huge.

Besides "it works and the counts are right", each command must stay bounded:

* Redis is never blocked for long: the server's slow log (threshold :data:`SLOW_US`) holds no command
  the admin commands sent (script calls, reads and deletions in bounded steps);
* the command's own memory does not grow with the queue: its peak RSS is compared with the same
  command on an empty queue (:data:`RSS_GROWTH_KIB`).

``celeriac purge`` failed on 9,000 waiting messages ("too many results to unpack", see
``tests/unit/test_lua_unpack.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from celeriac import Celeriac
from celeriac.message import Message, new_task_id
from celeriac.testing import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEPTH = 200_000
DELAYED = 200_000
DEAD_CAP = 10_000  # RedisBroker's default dead_letter_max
SLOW_US = 50_000  # one command of 50 ms blocks every worker and producer for that long
RSS_GROWTH_KIB = 30 * 1024  # a 200k listing held in memory would take far more


# the celeriac program, reporting its own peak RSS on stderr when it exits (click exits via sys.exit).
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so it would report the
# test process that forked the program.
_PROGRAM = """
import atexit, re, sys
def peak():
    with open("/proc/self/status") as f:
        kib = re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1)
    sys.stderr.write(f"\\nPEAK_RSS_KIB={kib}\\n")
atexit.register(peak)
sys.argv[0] = "celeriac"
from celeriac.cli import run
run()
"""


def celeriac(url: str, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the ``celeriac`` program with stdout a pipe; its result and peak RSS in KiB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, "--broker", url, *args],
        capture_output=True,  # pipes, not a terminal
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    err, _, rss = result.stderr.rpartition("\nPEAK_RSS_KIB=")
    result.stderr = err
    return result, int(rss)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(["--slowlog-log-slower-than", str(SLOW_US), "--slowlog-max-len", "1000"]) as s:
        yield s


def fill(url: str) -> tuple[Celeriac, redis.Redis]:
    """200,000 ready and 200,000 delayed messages in ``default``, and a dead-letter stream at its cap."""
    app = Celeriac("scale", broker=url)
    client = redis.Redis.from_url(url)
    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    client.xgroup_create(keys.ready, "celeriac", id="0", mkstream=True)
    data = [app.codec.encode(Message(new_task_id(), "shop.tasks.resize", (n, "x" * 40))) for n in range(1000)]
    pipe = client.pipeline(transaction=False)
    for n in range(DEPTH):
        pipe.xadd(keys.ready, {"m": data[n % 1000]})
        if n % 10_000 == 9_999:
            pipe.execute()
    now_ms = int(time.time() * 1000)
    for n in range(DELAYED):
        pipe.zadd(keys.delayed, {data[n % 1000] + n.to_bytes(4, "big"): now_ms + 3_600_000 + n})
        if n % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    # at the cap the way a worker keeps it: XADD ... MAXLEN ~ cap (a little above the cap at most)
    for n in range(DEAD_CAP + 2_000):
        pipe.xadd(
            keys.dead,
            {"m": data[n % 1000], "reason": f"failed for good ({n})", "time": now_ms},
            maxlen=DEAD_CAP,
            approximate=True,
        )
    pipe.execute()
    client.slowlog_reset()
    return app, client


def test_admin_commands_on_a_200k_queue_and_a_full_dead_letter_stream(server: RedisServer) -> None:
    url = server.url
    baseline = {
        "status": celeriac(url, "status")[1],
        "list": celeriac(url, "dlq", "list", "default", "-n", str(DEAD_CAP), "--json")[1],
    }
    app, client = fill(url)
    keys = app.broker.keys.queue("default")  # type: ignore[attr-defined]
    dead = client.xlen(keys.dead)
    assert DEAD_CAP <= dead < DEAD_CAP + 200
    timings = {}

    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result, rss = celeriac(url, *args)
        timings[name] = time.monotonic() - started
        assert result.returncode == 0, f"{name}: {result.stderr}"
        if name in baseline:
            assert rss - baseline[name] < RSS_GROWTH_KIB, (name, rss, baseline[name])
        return result

    # status: exact counts, as a table, piped and as JSON
    doc = json.loads(run("status", "status", "--json").stdout)
    (row,) = [q for q in doc["queues"] if q["queue"] == "default"]
    assert row == {
        "queue": "default",
        "ready": DEPTH,
        "delayed": DELAYED,
        "running": 0,
        "dead": dead,
        "paused": False,
    }
    assert f"default\t{DEPTH}\t{DELAYED}\t0\t{dead}" in run("status-piped", "status").stdout
    assert f"{DEPTH}" in run("status-table", "status", "--table").stdout

    # dlq list: the whole capped stream, each record in full, oldest first
    records = [
        json.loads(x)
        for x in run("list", "dlq", "list", "default", "-n", str(DEAD_CAP), "--json").stdout.splitlines()
    ]
    assert len(records) == DEAD_CAP
    assert all(
        r["task"] == "shop.tasks.resize" and r["reason"].startswith("failed for good") for r in records
    )
    piped = run("list-piped", "dlq", "list", "default", "-n", str(DEAD_CAP)).stdout.splitlines()
    assert len(piped) == DEAD_CAP + 1

    # dlq replay --all: every dead letter back behind the 200k waiting ones
    assert f"replayed {dead} dead letter(s)" in run("replay", "dlq", "replay", "default", "--all").stdout
    assert client.xlen(keys.dead) == 0
    assert app.broker.stats("default").ready == DEPTH + dead

    # a full stream again, then dlq purge
    pipe = client.pipeline(transaction=False)
    for _ in range(DEAD_CAP):
        pipe.xadd(keys.dead, {"m": b"x", "reason": "r", "time": 0}, maxlen=DEAD_CAP, approximate=True)
    pipe.execute()
    refilled = client.xlen(keys.dead)
    assert f"deleted {refilled} dead letter(s)" in run("dlq-purge", "dlq", "purge", "default", "-y").stdout
    assert client.xlen(keys.dead) == 0

    # purge: 210,000 ready and 200,000 delayed (9,000 ready used to fail)
    out = run("purge", "purge", "default", "-y").stdout
    assert f"purged {DEPTH + dead + DELAYED} message(s)" in out
    s = app.broker.stats("default")
    assert (s.ready, s.delayed, s.running, s.dead) == (0, 0, 0, 0)

    # Redis was never blocked: no command of the admin commands reached the slow log
    slow = [(e["duration"], e["command"][:80]) for e in client.slowlog_get(1000)]
    assert slow == [], slow
    print("admin command wall times (s):", {k: round(v, 2) for k, v in timings.items()})
    client.close()
    app.close()
