"""Error messages a new user met, each saying what is wrong and what to do (regression tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from click.testing import Result

from celeriac import Celeriac
from celeriac.exceptions import ConfigurationError, NotRegistered
from celeriac.record import ResultRecord
from celeriac.result import rebuild_exception
from celeriac.states import TaskState
from celeriac.testing import RedisServer, ThreadWorker

from .conftest import TasksModule

Cli = Callable[..., Result]


def program(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# ---- NotRegistered, worded once -------------------------------------------------------------------
def test_not_registered_rebuilt_from_a_stored_result_is_worded_once() -> None:
    sent = NotRegistered("shop.tasks.nope")
    assert str(sent) == "task 'shop.tasks.nope' is not registered"
    record = ResultRecord(
        "t1", TaskState.FAILURE, exc_type="celeriac.exceptions.NotRegistered", exc_message=str(sent)
    )
    rebuilt = rebuild_exception(record)
    assert isinstance(rebuilt, NotRegistered)
    assert str(rebuilt) == "task 'shop.tasks.nope' is not registered"


@pytest.mark.redis
def test_call_wait_of_an_unknown_task(
    cli: Cli, tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    thread_worker(tasks_module.app)
    result = cli("call", "shop.tasks.nope", "--wait", "--timeout", "20")
    assert result.exit_code == 1
    assert "NotRegistered: task 'shop.tasks.nope' is not registered (dead-lettered:" in result.stderr
    assert result.stderr.count("is not registered") == 1
    assert "celeriac dlq list" in result.stderr


# ---- a misspelled task name: what is true, and the nearest names -----------------------------------
@pytest.mark.redis
def test_misspelled_task_is_dead_lettered_with_the_nearest_names(
    tasks_module: TasksModule, thread_worker: Callable[..., ThreadWorker]
) -> None:
    app = tasks_module.app
    thread_worker(app)
    app.send_task("cli.ad", (1, 2))
    deadline = time.monotonic() + 20
    while not app.broker.dead_letters("default", 1):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (letter,) = app.broker.dead_letters("default", 1)
    reason = letter.reason
    assert reason.startswith(
        "unknown task: task 'cli.ad' is not registered; this worker has no task by that name"
    )
    assert f"({len(app.tasks)} registered; did you mean 'cli.add' or " in reason
    assert "-I/--include or worker_queue_modules" in reason and "celeriac dlq replay" in reason
    # no claim that the app module lacks tasks: the app module holds every task here
    assert "imported only the app module:" not in reason


# ---- a Redis that needs a password -----------------------------------------------------------------
@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    with RedisServer(["--requirepass", "pa/ss@word"]) as server:
        yield server


def _host_port(server: RedisServer) -> str:
    return server.url.split("@")[-1].split("//")[-1].split("/")[0]


@pytest.mark.redis
def test_no_password_for_a_redis_that_needs_one(locked_redis: RedisServer) -> None:
    run = program("--broker", f"redis://{_host_port(locked_redis)}/0", "status")
    assert run.returncode == 1
    err = run.stderr.strip()
    assert "requires authentication and the URL has no password" in err, err
    assert "redis://:<password>@host:port/db" in err and "ACL user" in err
    assert "HELLO must be called" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.redis
def test_wrong_password_says_so(locked_redis: RedisServer) -> None:
    run = program("--broker", f"redis://:wrong@{_host_port(locked_redis)}/0", "status")
    assert run.returncode == 1
    assert "refused the credentials (wrong password" in run.stderr
    assert "wrong" not in run.stderr.replace("(wrong password", "")


@pytest.mark.redis
def test_password_with_a_slash_not_percent_encoded(locked_redis: RedisServer) -> None:
    raw = f"redis://:pa/ss@word@{_host_port(locked_redis)}/0"
    run = program("--broker", raw, "status")
    assert run.returncode == 1
    err = run.stderr.strip()
    assert "is not percent-encoded" in err and "'/' -> %2F" in err and "'@' -> %40" in err
    assert "database must be a number" not in err
    assert f"'redis://:***@{_host_port(locked_redis)}/0'" in err  # the URL, redacted
    assert "pa/ss" not in err and "word" not in err.replace("password", "")
    # percent-encoded, the same password works
    encoded = f"redis://:{quote('pa/ss@word', safe='')}@{_host_port(locked_redis)}/0"
    ok = program("--broker", encoded, "status")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    "url",
    ["redis://:pa/ss@h:6392/0", "redis://:p@ss/w@h:6392/0", "redis://:a?b@h:1/0", "redis://:a#b@h:1/0"],
)
def test_unencoded_password_characters_are_detected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="percent-encode the password"):
        Celeriac("x", broker=url)


def test_a_password_with_only_an_at_sign_still_parses() -> None:
    Celeriac("x", broker="redis://:p@ss@h:6392/0").close()  # the last "@" ends the user info
    Celeriac("x", broker="redis://:p%2Fss@h:6392/0").close()
