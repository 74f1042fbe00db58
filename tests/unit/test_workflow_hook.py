"""The worker's workflow hook commits plans by group commit: the first plan is flushed at once, by the
task that made it; plans made while a flush is on its way form the next batch (worker/workflow.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from celeriac import Celeriac
from celeriac.worker.workflow import WorkflowHook
from celeriac.workflow.plan import Plan, Send


@pytest.fixture
def app() -> Iterator[Celeriac]:
    app = Celeriac("hook", broker="memory://")
    yield app
    app.close()


def _plan(key: str) -> Plan:
    plan = Plan()
    plan.sends.append(Send("default", key, b"m"))
    return plan


class FakeStore:
    """Records each flush's keys; each flush waits until the test lets it finish."""

    def __init__(self) -> None:
        self.flushes: list[list[str]] = []
        self.release: asyncio.Event = asyncio.Event()
        self.fail: Exception | None = None

    async def apply(self, plan: Plan) -> list[object]:
        self.flushes.append([s.key for s in plan.sends])
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return []


def _hook(app: Celeriac) -> tuple[WorkflowHook, FakeStore]:
    hook = WorkflowHook(app, "redis://127.0.0.1:1/0", "celeriac")  # the store is never connected
    store = FakeStore()
    hook.store = store  # type: ignore[assignment]
    return hook, store


async def test_an_idle_hook_flushes_the_first_plan_at_once_without_a_task(app: Celeriac) -> None:
    hook, store = _hook(app)
    store.release.set()
    await hook._commit(_plan("a"))
    assert store.flushes == [["a"]]
    assert hook._drainer is None  # flushed by the committing task itself
    await hook._commit(_plan("b"))  # idle again: flushed at once too
    assert store.flushes == [["a"], ["b"]]


async def test_plans_made_during_a_flush_form_the_next_batch(app: Celeriac) -> None:
    hook, store = _hook(app)
    first = asyncio.ensure_future(hook._commit(_plan("a")))
    await asyncio.sleep(0)  # the first flush is on its way
    later = [asyncio.ensure_future(hook._commit(_plan(k))) for k in ("b", "c")]
    await asyncio.sleep(0)
    assert store.flushes == [["a"]]
    store.release.set()
    await asyncio.gather(first, *later)
    assert store.flushes == [["a"], ["b", "c"]]  # one flush for both
    assert not hook._flushing and not hook._pending


async def test_a_failed_flush_raises_in_every_task_of_its_batch_and_the_next_batch_still_runs(
    app: Celeriac,
) -> None:
    hook, store = _hook(app)
    store.fail = ConnectionError("redis down")
    first = asyncio.ensure_future(hook._commit(_plan("a")))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(hook._commit(_plan(k))) for k in ("b", "c")]
    await asyncio.sleep(0)
    store.release.set()
    results = await asyncio.gather(first, *later, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)  # each task is handed back
    assert store.flushes == [["a"], ["b", "c"]]
    store.fail = None
    await hook._commit(_plan("d"))  # the hook is usable again
    assert store.flushes[-1] == ["d"]


async def test_a_cancelled_first_committer_leaves_the_later_plans_flushed(app: Celeriac) -> None:
    hook, store = _hook(app)
    first = asyncio.ensure_future(hook._commit(_plan("a")))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(hook._commit(_plan("b")))
    await asyncio.sleep(0)
    first.cancel()  # a cold shutdown cancels the task whose flush is on its way
    with pytest.raises(asyncio.CancelledError):
        await first
    store.release.set()
    await later
    assert store.flushes == [["a"], ["b"]]
    assert not hook._flushing and not hook._pending
