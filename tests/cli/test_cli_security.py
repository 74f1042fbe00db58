"""The CLI never shows a password, reports refused credentials in one line, warns when a worker
accepts pickle, and lists dead letters of signed or pickled messages without unpickling them."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from celeriac import Celeriac
from celeriac.message import Message, new_task_id
from celeriac.testing import RedisServer, free_port

from .conftest import TasksModule

pytestmark = pytest.mark.redis

Cli = Callable[..., Result]

PASSWORDS = ["hunter2-x", "hunt@er2-x", "hunt:er2-x", "hunt/er2-x", "hunt%40er2-x"]


COMMANDS = [["status"], ["dlq", "list", "default"], ["purge", "default", "-y"], ["call", "cli.add"]]


@pytest.mark.parametrize(
    ("password", "command"),
    [(password, ["status"]) for password in PASSWORDS] + [("hunt@er2-x", c) for c in COMMANDS[1:]],
)
def test_no_command_shows_a_password(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, password: str, command: list[str]
) -> None:
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    url = f"redis://user:{password}@127.0.0.1:{free_port()}/0"
    for result in (
        cli("--broker", url, *command),
        cli(*command, env={"CELERIAC_BROKER_URL": url}),
    ):
        assert result.exit_code == 1, result.output
        assert password not in result.output and "er2-x" not in result.output, result.output
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "***" in result.stderr


def test_wrong_credentials_stop_the_worker_with_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tasks_module: TasksModule
) -> None:
    monkeypatch.setattr("celeriac.cli.worker.configure_logging", lambda level: None)
    with RedisServer(args=["--requirepass", "right-PW"]) as server:
        url = f"redis://:wrong-PW@127.0.0.1:{server.port}/0"
        result = cli("worker", "-A", tasks_module.spec, "--broker", url, "--burst")
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: Redis at redis://:***@127.0.0.1:")
        assert "refused the credentials" in result.stderr
        assert "wrong-PW" not in result.output and "right-PW" not in result.output


PICKLE_TASKS = """
from celeriac import Celeriac

app = Celeriac("pickles", accept_content=("msgpack", "pickle"))


@app.task(name="pk.echo", serializer="pickle", ignore_result=False)
def echo(value):
    return value
"""


def test_a_worker_that_accepts_pickle_warns_at_start(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "pickle_tasks_mod.py").write_text(textwrap.dedent(PICKLE_TASKS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    monkeypatch.setattr("celeriac.cli.worker.configure_logging", lambda level: None)
    caplog.set_level(logging.INFO)
    from pickle_tasks_mod import app  # type: ignore[import-not-found]

    try:
        sent = app.tasks["pk.echo"].delay({1, 2})  # a set: only pickle carries it
        result = cli("worker", "-A", "pickle_tasks_mod:app", "--burst")
        assert result.exit_code == 0, result.output
        assert sent.get(timeout=5) == {1, 2}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("accept_content includes 'pickle'" in w for w in warnings), warnings
    finally:
        module = sys.modules.pop("pickle_tasks_mod", None)
        if module is not None:
            module.app.close()


def test_dead_letters_of_signed_and_pickled_messages_are_listed_without_unpickling(
    cli: Cli, tasks_module: TasksModule
) -> None:
    key = "s" * 32
    producer = Celeriac("p", broker=tasks_module.broker_url, message_signing_key=key)
    pickler = Celeriac("p", broker=tasks_module.broker_url, accept_content=("msgpack", "pickle"))
    queue = producer.broker.keys.queue("default")  # type: ignore[attr-defined]

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (pytest.fail, ("the CLI unpickled a dead letter",))

    signed = producer.codec.encode(Message(new_task_id(), "sec.signed", (1,)))
    pickled = pickler.codec.encode(Message(new_task_id(), "sec.pickled", (Boom(),), serializer="pickle"))
    for data in (signed, pickled):
        producer.broker.sync.xadd(queue.dead, {"m": data, "reason": "test", "time": 0})  # type: ignore[attr-defined]
    out = cli("dlq", "list", "default")
    assert out.exit_code == 0, out.output
    assert "sec.signed" in out.stdout and "sec.pickled" in out.stdout
    producer.close()
    pickler.close()
