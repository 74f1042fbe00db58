"""The FastAPI example (examples/fastapi_app) through httpx's ASGI transport, with a real worker
process: sends from async endpoints, ``aget``/``await result`` while the event loop serves others."""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis

from .conftest import EXAMPLES, WorkerProcess

pytestmark = pytest.mark.redis

EXAMPLE = EXAMPLES / "fastapi_app"

# a task the test releases: it blocks in the worker until the test pushes to a Redis list
RELEASE_TASKS = """
import os

import redis

from fastapi_example import celery


@celery.task(name="test.wait_for_release")
def wait_for_release():
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    assert r.blpop("test:release", timeout=30) is not None
    return "released"
"""


@pytest.fixture
def example(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module("fastapi_example")
    yield module
    module.celery.close()
    sys.modules.pop("fastapi_example", None)


@pytest.fixture
def worker(
    example: ModuleType, redis_url: str, tmp_path: Path, start_worker_process: Callable[..., WorkerProcess]
) -> WorkerProcess:
    (tmp_path / "release_tasks.py").write_text(textwrap.dedent(RELEASE_TASKS))
    env = {"REDIS_URL": redis_url, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    return start_worker_process(
        EXAMPLE, env, "-A", "fastapi_example", "-P", "threads", "-c", "4", "-I", "release_tasks"
    )


def _client(example: ModuleType) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=example.api), base_url="http://example")


async def test_send_then_fetch_the_result(example: ModuleType, worker: WorkerProcess) -> None:
    async with _client(example) as client:
        sent = await client.post("/add", params={"x": 2, "y": 3})
        assert sent.status_code == 200
        got = await client.get(f"/result/{sent.json()['task_id']}", params={"timeout": 20})
        assert got.json() == {"task_id": sent.json()["task_id"], "value": 5}
        assert (await client.post("/add/wait", params={"x": 20, "y": 22})).json() == {"value": 42}
        missing = await client.get("/result/no-such-task", params={"timeout": 0.1})
        assert missing.status_code == 404


async def test_waiting_endpoints_leave_the_loop_serving(
    example: ModuleType, worker: WorkerProcess, redis_url: str
) -> None:
    blocked = example.celery.send_task("test.wait_for_release", ignore_result=False)
    async with _client(example) as client:
        # a request that waits for a task the worker holds until released
        waiting = asyncio.ensure_future(client.get(f"/result/{blocked.id}", params={"timeout": 30}))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        # meanwhile the same loop serves 20 more requests, end to end through the worker
        answers = await asyncio.gather(
            *(client.post("/add/wait", params={"x": i, "y": 1}) for i in range(20))
        )
        assert [a.json()["value"] for a in answers] == [i + 1 for i in range(20)]
        assert not waiting.done()
        r = redis.Redis.from_url(redis_url)
        r.rpush("test:release", 1)
        r.close()
        assert (await waiting).json()["value"] == "released"
