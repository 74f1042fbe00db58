"""Fixtures of the CLI tests: an importable tasks module in a temporary directory, a CliRunner, and a
worker running in a thread, all against the session's private redis-server."""

from __future__ import annotations

import secrets
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from celeriac import Celeriac
from celeriac.cli import main

TASKS = """
import asyncio

from celeriac import Celeriac

app = Celeriac("clitest")
other = Celeriac("other")
not_an_app = 42


@app.task(name="cli.add", ignore_result=False)
def add(x, y):
    return x + y


@app.task(name="cli.boom", ignore_result=False)
def boom():
    raise ValueError("kaboom")


@app.task(name="cli.nap", ignore_result=False)
async def nap(seconds):
    await asyncio.sleep(seconds)
    return seconds
"""


@dataclass
class TasksModule:
    """A tasks module written to a temporary directory that is also the current directory."""

    name: str
    path: Path
    broker_url: str

    @property
    def spec(self) -> str:
        return f"{self.name}:app"

    @property
    def app(self) -> Celeriac:
        module = sys.modules.get(self.name)
        if module is None:
            from celeriac.cli._loader import load_app

            return load_app(self.spec)
        app: Celeriac = module.app
        return app


@pytest.fixture
def tasks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[TasksModule]:
    """A fresh, uniquely named tasks module; ``CELERIAC_BROKER_URL`` points at the private Redis."""
    name = f"clitasks_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    for var in ("CELERIAC_APP", "CELERIAC_WORKER_QUEUES"):
        monkeypatch.delenv(var, raising=False)
    module = TasksModule(name, tmp_path, redis_url)
    yield module
    loaded = sys.modules.pop(name, None)
    if loaded is not None:
        loaded.app.close()
        loaded.other.close()


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Invoke ``celeriac`` in-process: ``cli("status", "-Q", "x")``; wide output so tables do not wrap."""
    runner = CliRunner(env={"COLUMNS": "250"})

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return invoke
