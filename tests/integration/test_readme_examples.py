"""The Python examples of the README and of the docs site run as written, against a real
redis-server and a real worker.

Each block that the README or a page under docs/ marks with ``<!-- example: NAME -->`` on the line
before its fence is split in two: the leading definitions (imports, the app, tasks, configuration) and
the rest (sends, ``get()``, asserts), which starts at the first ``assert`` or the first call of a send
or read method. The definitions run as the module ``shop.tasks`` (the examples' module, so task names
are ``shop.tasks.*``), a worker (``start_worker``, threads) consumes the queues the block names, then
the rest runs in the same module. The one edit made to the text: the Redis URL of the examples
(``redis://localhost:6379/0``, also what ``Celeriac("shop")`` falls back to) becomes the test's private
server, through ``CELERIAC_BROKER_URL``."""

from __future__ import annotations

import ast
import re
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.contrib.testing.worker import TestWorkController, start_worker
from celeriac.execution import Outcome
from celeriac.states import TaskState

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_URL = "redis://localhost:6379/0"
#: calls that use the queue (or a result): the first one ends the definitions
USES = {"delay", "apply_async", "apply", "get", "send_task", "send_many", "revoke", "run_now"}


def examples() -> dict[str, str]:
    """``{"page:name": source}`` of every marked block."""
    found = {}
    for page in PAGES:
        for name, source in re.findall(
            r"<!-- example: ([\w-]+) -->\n```python\n(.*?)\n```", page.read_text(), re.S
        ):
            found[f"{page.name}:{name}"] = source
    assert any(key.startswith("README.md:") for key in found), (
        "the README has no <!-- example: NAME --> blocks"
    )
    return found


def split(source: str) -> tuple[str, str]:
    """(definitions, uses) of one block."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert) or any(
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in USES
            for node in ast.walk(stmt)
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ):
            first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))]) - 1
            return "\n".join(lines[:first]), "\n".join(lines[first:])
    return source, ""


@pytest.fixture
def module(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    mod = types.ModuleType("shop.tasks")  # the README's module: task names shop.tasks.*
    sys.modules[mod.__name__] = mod
    try:
        yield mod
    finally:
        del sys.modules[mod.__name__]


@pytest.mark.parametrize("name", sorted(examples()))
def test_readme_example_runs(name: str, module: types.ModuleType, redis_url: str) -> None:
    source = examples()[name].replace(README_URL, redis_url)
    definitions, uses = split(source)
    exec(compile(definitions, f"README:{name}:definitions", "exec"), module.__dict__)
    app = module.__dict__["app"]
    queues = sorted({"default", *re.findall(r"""queue[s]?=["'](\w+)["']""", source)})
    with start_worker(app, pool="threads", concurrency=8, perform_ping_check=False, queues=queues) as worker:
        exec(compile(uses, f"README:{name}", "exec"), module.__dict__)
        outcomes = settled(worker)
    app.close()
    # what the example sent ran, and only the tasks meant to fail (named ``fail``) failed
    unexpected = [
        (o.task_name, o.kind, str(o.state), o.reason or repr(o.exc))
        for o in outcomes
        if (o.kind == "dead" or o.state in (TaskState.FAILURE, TaskState.REVOKED))
        and o.task_name != "shop.tasks.fail"
    ]
    assert unexpected == []


def settled(worker: TestWorkController, quiet_s: float = 0.5, limit_s: float = 15.0) -> list[Outcome]:
    """The worker's outcomes once no new one came for ``quiet_s`` (what the example sent has run)."""
    deadline = time.monotonic() + limit_s
    seen = -1
    while time.monotonic() < deadline:
        outcomes = worker.outcomes
        if len(outcomes) == seen:
            return outcomes
        seen = len(outcomes)
        time.sleep(quiet_s)
    raise AssertionError(f"the worker was still busy after {limit_s}s")


def test_split_ends_definitions_at_the_first_use() -> None:
    defs, uses = split("import x\n\n@x.task\ndef f():\n    return g.get()\n\nf.delay()\nassert 1\n")
    assert defs.strip().endswith("return g.get()") and uses.startswith("f.delay()")
