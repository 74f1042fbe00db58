"""Outcomes out of the box: one log line per outcome (failed, retried, dead-lettered, expired at the
default level; successes at INFO), ``--log-format json`` (one JSON object per line), and the
``@app.on_outcome`` hook for custom exporters."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from celeriac import Celeriac, Reject
from celeriac.outcomes import OutcomeEvent
from celeriac.testing import ThreadWorker

pytestmark = pytest.mark.redis


def make_app(redis_url: str) -> Celeriac:
    app = Celeriac("outcomes", broker=redis_url)

    @app.task(name="o.ok")
    def ok() -> int:
        return 1

    @app.task(name="o.fail")
    def fail(card: str, password: str = "") -> None:
        raise ValueError(f"declined {card}\nsecond line")

    @app.task(name="o.flaky", autoretry_for=(ConnectionError,), max_retries=1, default_retry_delay=0)
    def flaky() -> None:
        raise ConnectionError("reset")

    @app.task(name="o.reject")
    def reject() -> None:
        raise Reject("bad payload")

    return app


def run_all(app: Celeriac, worker: ThreadWorker) -> dict[str, str]:
    ids = {
        "ok": app.tasks["o.ok"].delay().id,
        "fail": app.tasks["o.fail"].delay("4242", password="hunter2").id,
        "flaky": app.tasks["o.flaky"].delay().id,
        "reject": app.tasks["o.reject"].delay().id,
        "expired": app.tasks["o.ok"]
        .apply_async(expires=datetime.now(timezone.utc) - timedelta(seconds=1))
        .id,
    }
    worker.wait_outcomes(lambda outs: len(outs) >= 6, timeout_s=20)  # flaky: a retry, then dead
    return ids


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "celeriac.task"]


def test_one_line_per_outcome_at_the_default_level(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = make_app(redis_url)
    ids = run_all(app, thread_worker(app, concurrency=2))
    got = lines(caplog)
    assert (logging.ERROR, f"Task o.fail[{ids['fail']}] failed in") in [
        (lv, m.split(" in ")[0] + " in") for lv, m in got
    ]
    fail_line = next(m for _, m in got if ids["fail"] in m)
    assert fail_line.endswith("ValueError: declined 4242 second line")  # one line, even from two
    assert "\n" not in fail_line
    assert (logging.WARNING, f"Task o.flaky[{ids['flaky']}] retry 1 in 0s: ConnectionError: reset") in got
    assert (
        logging.ERROR,
        f"Task o.flaky[{ids['flaky']}] dead-lettered: max retries (1) exceeded: ConnectionError: reset",
    ) in got
    assert (
        logging.ERROR,
        f"Task o.reject[{ids['reject']}] dead-lettered: rejected by the task: bad payload",
    ) in got
    expired = next(m for lv, m in got if ids["expired"] in m)
    assert expired.startswith(f"Task o.ok[{ids['expired']}] expired: ")
    assert not any(ids["ok"] in m for _, m in got)  # no line per success at WARNING
    assert len(got) == 5
    assert not any(r.exc_info for r in caplog.records if r.name == "celeriac.task")


def test_successes_and_tracebacks_at_info(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(redis_url)
    ids = run_all(app, thread_worker(app, concurrency=2))
    got = dict((m.split("]")[0], (lv, m)) for lv, m in lines(caplog))
    level, line = got[f"Task o.ok[{ids['ok']}"]
    assert level == logging.INFO
    assert line.startswith(f"Task o.ok[{ids['ok']}] succeeded in ")
    assert line.endswith("s") and float(line.rsplit(" ", 1)[1][:-1]) >= 0
    fail = next(r for r in caplog.records if r.name == "celeriac.task" and ids["fail"] in r.getMessage())
    assert "Traceback (most recent call last)" in fail.celeriac_traceback  # printed after the line


def test_on_outcome_hook_gets_every_outcome_with_its_fields(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(redis_url)
    events: list[OutcomeEvent] = []
    app.on_outcome(events.append)

    @app.on_outcome
    def broken(event: OutcomeEvent) -> None:
        raise RuntimeError("exporter down")

    worker = thread_worker(app, concurrency=2)
    ids = run_all(app, worker)
    by = {(e.task_id, e.event): e for e in events}
    assert len(events) == 6
    ok = by[(ids["ok"], "succeeded")]
    assert ok.task_name == "o.ok" and ok.queue == "default" and ok.state == "SUCCESS"
    assert ok.worker == worker.worker.worker_id
    assert ok.queued_ms and ok.finished_ms >= ok.queued_ms
    assert ok.args is None  # arguments only for failures
    fail = by[(ids["fail"], "failed")]
    assert fail.exception_type == "builtins.ValueError"
    assert fail.exception_message == "declined 4242\nsecond line"
    assert "Traceback" in (fail.traceback or "")
    assert fail.args == "('4242',)"
    assert fail.kwargs == "{'password': '***'}"  # redacted as on the dashboard
    assert by[(ids["flaky"], "retried")].retries == 0
    assert by[(ids["flaky"], "dead_lettered")].retries == 1
    assert by[(ids["expired"], "expired")].state == "EXPIRED"
    as_json = fail.as_json()
    assert as_json["event"] == "task.failed"
    assert as_json["finished_at"].endswith("Z") and "finished_ms" not in as_json
    json.dumps(as_json)
    # the broken exporter was logged each time and changed nothing
    assert sum("an on_outcome handler failed" in r.getMessage() for r in caplog.records) == 6


JSON_APP = """
from celeriac import Celeriac

app = Celeriac("jsonlog")

@app.task(name="j.ok")
def ok(x):
    return x

@app.task(name="j.fail")
def fail(token=None):
    raise KeyError("missing")

@app.task(name="j.say")
def say():
    import logging, os
    logging.getLogger("jsonlog").warning("said by %d", os.getpid())
"""


@pytest.mark.parametrize("pool", ["asyncio", "processes"])
def test_worker_log_format_json(redis_url: str, tmp_path: Path, pool: str) -> None:
    (tmp_path / "jsonlog.py").write_text(textwrap.dedent(JSON_APP))
    env = {**os.environ, "CELERIAC_BROKER_URL": redis_url}
    producer = Celeriac("jsonlog", broker=redis_url)
    ok = producer.send_task("j.ok", (1,))
    bad = producer.send_task("j.fail", kwargs={"token": "s3cret"})
    said = producer.send_task("j.say")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac.cli",
            "worker",
            "-A",
            "jsonlog:app",
            "--burst",
            "--log-format",
            "json",
            "--loglevel",
            "warning",
            "-P",
            pool,
            "-c",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    producer.close()
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is one JSON object
    outcomes = {r["task_id"]: r for r in records if r.get("event", "").startswith("task.")}
    assert set(outcomes) == {ok.id, bad.id, said.id}  # successes too, whatever --loglevel
    (told,) = [r for r in records if r["logger"] == "jsonlog"]  # the task's own log line: JSON too
    assert told["message"] == f"said by {told['pid']}" and told["level"] == "WARNING"
    if pool == "processes":
        assert told["pid"] != outcomes[ok.id]["pid"]  # logged in a child process
    s, f = outcomes[ok.id], outcomes[bad.id]
    assert s["event"] == "task.succeeded" and s["level"] == "INFO" and s["logger"] == "celeriac.task"
    assert s["message"].startswith(f"Task j.ok[{ok.id}] succeeded in ")
    assert s["task_name"] == "j.ok" and s["queue"] == "default" and s["state"] == "SUCCESS"
    assert s["runtime_s"] >= 0 and s["retries"] == 0 and s["worker"]
    for key in ("ts", "queued_at", "started_at", "finished_at"):
        assert s[key].endswith("Z"), key
    assert f["event"] == "task.failed" and f["level"] == "ERROR"
    assert f["exception_type"] == "builtins.KeyError"
    assert "Traceback (most recent call last)" in f["traceback"]
    assert f["kwargs"] == "{'token': '***'}"
