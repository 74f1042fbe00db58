"""The ``celeriac`` commands through click's CliRunner, against the session's private redis-server."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from click.testing import Result

from celeriac.message import Message, new_task_id
from celeriac.testing import ThreadWorker, free_port

from .conftest import TasksModule

pytestmark = pytest.mark.redis

Cli = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def stats(tasks: TasksModule, queue: str = "default") -> tuple[int, int, int, int]:
    s = tasks.app.broker.stats(queue)
    return s.ready, s.delayed, s.running, s.dead


# ---- group, help, errors -------------------------------------------------------------------------
def test_help_lists_the_commands_and_env_vars(cli: Cli) -> None:
    out = ok(cli("--help"))
    for command in ("worker", "call", "status", "dlq", "purge"):
        assert command in out
    assert "CELERIAC_APP" in out and "CELERIAC_BROKER_URL" in out
    assert "CELERIAC_WORKER_QUEUES" in ok(cli("worker", "--help"))
    assert "CELERIAC_DLQ_LIST_LIMIT" in ok(cli("dlq", "list", "--help"))


def test_version(cli: Cli) -> None:
    from celeriac import __version__

    assert __version__ in ok(cli("--version"))


def test_unreachable_redis_is_one_line_without_password(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    result = cli("--broker", url, "status")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Redis at redis://user:***@127.0.0.1:")
    assert "unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_invalid_broker_url(cli: Cli) -> None:
    result = cli("--broker", "http://user:pw@example.com", "status")
    assert result.exit_code == 1
    assert "invalid setting" in result.stderr and "redis://" in result.stderr
    assert "pw@" not in result.output


def test_bad_app_is_a_usage_error(cli: Cli, tasks_module: TasksModule) -> None:
    result = cli("-A", f"{tasks_module.name}:not_an_app", "status")
    assert result.exit_code == 2
    assert "not a Celeriac app" in result.stderr
    result = cli("-A", "no_such_module_abc", "status")
    assert result.exit_code == 2
    assert "cannot import 'no_such_module_abc'" in result.stderr


def test_worker_needs_an_app(cli: Cli) -> None:
    result = cli("worker", "--burst")
    assert result.exit_code == 2
    assert "needs an app" in result.stderr


# ---- call ----------------------------------------------------------------------------------------
def test_call_by_name_without_app(cli: Cli, tasks_module: TasksModule) -> None:
    task_id = ok(cli("call", "cli.add", "--args", "[1, 2]")).strip()
    assert len(task_id) == 36
    assert stats(tasks_module) == (1, 0, 0, 0)


def test_call_checks_arguments_with_app(cli: Cli, tasks_module: TasksModule) -> None:
    result = cli("-A", tasks_module.spec, "call", "cli.add", "--args", "[1]")
    assert result.exit_code == 1
    assert "not sent" in result.stderr and "missing a required argument: 'y'" in result.stderr
    assert stats(tasks_module) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--args", "[1,"], "not JSON"),
        (["--args", '{"x": 1}'], "must be a JSON array"),
        (["--kwargs", "[1]"], "must be a JSON object"),
    ],
)
def test_call_bad_json(cli: Cli, tasks_module: TasksModule, args: list[str], expected: str) -> None:
    result = cli("call", "cli.add", *args)
    assert result.exit_code == 2
    assert expected in result.stderr


def test_call_countdown_and_queue(cli: Cli, tasks_module: TasksModule) -> None:
    ok(cli("call", "cli.add", "--args", "[1, 2]", "--countdown", "60", "--queue", "later"))
    assert stats(tasks_module, "later") == (0, 1, 0, 0)


def test_call_options_from_environment(cli: Cli, tasks_module: TasksModule) -> None:
    env = {"CELERIAC_APP": tasks_module.spec, "CELERIAC_CALL_ARGS": "[2, 3]", "CELERIAC_CALL_QUEUE": "envq"}
    ok(cli("call", "cli.add", env=env))
    assert stats(tasks_module, "envq") == (1, 0, 0, 0)


def test_call_wait_prints_the_result(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    thread_worker(tasks_module.app)
    out = ok(cli("-A", tasks_module.spec, "call", "cli.add", "--args", "[20, 22]", "--wait"))
    assert out.strip() == "42"
    out = ok(cli("call", "cli.nap", "--kwargs", '{"seconds": 0.01}', "--wait", "--timeout", "10"))
    assert out.strip() == "0.01"


def test_call_wait_reports_the_task_failure(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    thread_worker(tasks_module.app)
    result = cli("-A", tasks_module.spec, "call", "cli.boom", "--wait", "--timeout", "10")
    assert result.exit_code == 1
    assert "failed: ValueError: kaboom" in result.stderr
    assert 'raise ValueError("kaboom")' in result.stderr  # the remote traceback


def test_call_wait_timeout(cli: Cli, tasks_module: TasksModule) -> None:
    result = cli("call", "cli.add", "--args", "[1, 2]", "--wait", "--timeout", "0.2")
    assert result.exit_code == 1
    assert "did not finish within 0.2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---- worker (in-process; the subprocess smoke test is in test_worker_process.py) ------------------
def test_worker_burst_in_process(
    cli: Cli, tasks_module: TasksModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("celeriac.cli.worker.configure_logging", lambda level: None)
    app = tasks_module.app
    first = app.tasks["cli.add"].delay(1, 2)
    second = app.tasks["cli.add"].apply_async((3, 4), queue="io")
    env = {"CELERIAC_WORKER_QUEUES": "default,io", "CELERIAC_WORKER_CONCURRENCY": "5"}
    ok(cli("worker", "-A", tasks_module.spec, "--burst", "-P", "threads", env=env))
    assert first.get(timeout=5) == 3
    assert second.get(timeout=5) == 7


def test_worker_rejects_bad_options(cli: Cli, tasks_module: TasksModule) -> None:
    assert cli("worker", "-A", tasks_module.spec, "-c", "0").exit_code == 2
    assert (
        cli("worker", "-A", tasks_module.spec, "-P", "eventlet").exit_code == 2
    )  # prefork: Celery's name, accepted


# ---- status --------------------------------------------------------------------------------------
def test_status_tables(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = tasks_module.app
    app.tasks["cli.add"].apply_async((1, 2), queue="stuck")
    app.tasks["cli.add"].apply_async((1, 2), queue="stuck", countdown=60)
    out = ok(cli("status", "-Q", "stuck", "--table"))
    assert f"broker: {tasks_module.broker_url}" in out
    assert "no live workers" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
    assert [c.strip() for c in rows["stuck"].split("│")[2:6]] == ["1", "1", "0", "0"]
    assert "default" in rows

    w = thread_worker(app, queues=["hot", "cold"], worker_id="cli-test-worker")
    out = ok(cli("status", "--table"))
    assert "Workers (1 live)" in out
    assert "cli-test-worker" in out and "hot,cold" in out
    assert "hot" in out.split("Workers")[0]  # queues of live workers are listed without -Q
    assert w.worker.worker_id == "cli-test-worker"


# ---- dead letters --------------------------------------------------------------------------------
def make_dead_letters(tasks: TasksModule, thread_worker: Callable[..., ThreadWorker]) -> None:
    """Two dead letters in ``default``: an unknown task and an undecodable message."""
    app = tasks.app
    app.send_task("cli.unknown", args=(1,))
    client = redis.Redis.from_url(tasks.broker_url)
    client.xadd("celeriac:{default}:ready", {"m": b"\xc1 not msgpack"})
    client.close()
    w = thread_worker(app)
    deadline = time.monotonic() + 10
    while app.broker.stats("default").dead < 2:
        assert time.monotonic() < deadline, app.broker.stats("default")
        time.sleep(0.01)
    w.stop()


def test_dlq_list_replay_purge(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    assert "no dead letters" in cli("dlq", "list", "default").stderr
    make_dead_letters(tasks_module, thread_worker)
    out = ok(cli("dlq", "list", "default", "--table"))
    assert "Dead letters of 'default' (2 of 2)" in out
    assert "cli.unknown" in out and "unknown task" in out
    assert "(undecodable)" in out
    entries = tasks_module.app.broker.dead_letters("default", 10)
    assert entries[0].entry_id in out
    assert "(1 of 2)" in ok(cli("dlq", "list", "default", "--limit", "1", "--table"))

    # replay needs exactly one selector
    assert cli("dlq", "replay", "default").exit_code == 2
    assert cli("dlq", "replay", "default", "--all", "--limit", "1").exit_code == 2
    missing = cli("dlq", "replay", "default", "--id", "1-1")
    assert missing.exit_code == 1 and "no dead letter '1-1'" in missing.stderr

    known = next(e for e in entries if e.task_id)
    assert "replayed 1" in ok(cli("dlq", "replay", "default", "--id", known.entry_id))
    assert stats(tasks_module) == (1, 0, 0, 1)

    # purge asks first; "n" (or no terminal) aborts
    aborted = cli("dlq", "purge", "default", input="n\n")
    assert aborted.exit_code == 1 and stats(tasks_module)[3] == 1
    assert "deleted 1" in ok(cli("dlq", "purge", "default", input="y\n"))
    assert stats(tasks_module)[3] == 0
    assert "no dead letters" in ok(cli("dlq", "purge", "default", "--yes"))


def test_dlq_replay_all_and_limit(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    make_dead_letters(tasks_module, thread_worker)
    assert "replayed 1" in ok(cli("dlq", "replay", "default", "--limit", "1"))
    assert stats(tasks_module) == (1, 0, 0, 1)
    assert "replayed 1" in ok(cli("dlq", "replay", "default", "--all"))
    assert stats(tasks_module) == (2, 0, 0, 0)
    assert "replayed 0" in ok(cli("dlq", "replay", "default", "--all"))


# ---- purge ---------------------------------------------------------------------------------------
def test_purge(cli: Cli, tasks_module: TasksModule) -> None:
    app = tasks_module.app
    for i in range(3):
        app.tasks["cli.add"].delay(i, i)
    app.tasks["cli.add"].apply_async((1, 1), countdown=60)
    aborted = cli("purge", "default")  # no terminal input: aborts
    assert aborted.exit_code == 1
    assert stats(tasks_module) == (3, 1, 0, 0)
    assert "purged 4 message(s)" in ok(cli("purge", "default", "--yes"))
    assert stats(tasks_module) == (0, 0, 0, 0)
    assert "no waiting messages" in ok(cli("purge", "default"))


def test_purge_yes_from_environment(cli: Cli, tasks_module: TasksModule) -> None:
    tasks_module.app.tasks["cli.add"].delay(1, 2)
    ok(cli("purge", "default", env={"CELERIAC_PURGE_YES": "1"}))
    assert stats(tasks_module) == (0, 0, 0, 0)


def test_typed_broker_overrides_the_app(cli: Cli, tasks_module: TasksModule, fresh_redis: object) -> None:
    other_url: str = fresh_redis.url  # type: ignore[attr-defined]
    ok(cli("-A", tasks_module.spec, "--broker", other_url, "call", "cli.add", "--args", "[1, 2]"))
    client = redis.Redis.from_url(other_url)
    try:
        assert client.xlen("celeriac:{default}:ready") == 1
    finally:
        client.close()


def test_dlq_replay_all_replays_only_the_letters_there_at_the_start(
    cli: Cli, tasks_module: TasksModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries without a message are deleted by the replay but not counted as moved, and a worker may
    # dead-letter a replayed message again while the replay runs: neither may be replayed twice.
    from celeriac.broker.redis import RedisBroker

    client = redis.Redis.from_url(tasks_module.broker_url)
    dead = "celeriac:{default}:dead"
    msg = tasks_module.app.codec.encode(Message(new_task_id(), "cli.add", (1, 2)))
    for fields in (
        {"reason": "no message"},
        {"m": msg, "reason": "r"},
        {"M": msg},
        {"m": msg, "reason": "r"},
    ):
        client.xadd(dead, fields)
    original = RedisBroker.replay_dead

    def replay_then_fail_again(self: RedisBroker, queue: str, count: int, entry_id: str | None = None) -> int:
        n = original(self, queue, count, entry_id)
        client.xadd(dead, {"m": msg, "reason": "failed again during the replay"})
        return n

    monkeypatch.setattr(RedisBroker, "replay_dead", replay_then_fail_again)
    assert "replayed 2 dead letter(s)" in ok(cli("dlq", "replay", "default", "--all"))
    assert client.xlen(dead) == 1  # the one that failed again waits for the next replay
    client.close()
