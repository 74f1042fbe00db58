"""The worker tunes the cyclic garbage collector while it consumes (a higher young-generation
threshold, the start-up objects frozen) and restores the process's settings on every way a run ends:
a burst that ends, a stop, a cancellation, an error in the shutdown itself."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from celeriac import Celeriac, Worker
from celeriac.worker import worker as worker_module
from celeriac.worker.collector import GC_GEN0_THRESHOLD, consuming_gc

BEFORE = (700, 11, 12)  # CPython's default gen0 threshold, and recognisable older ones


@pytest.fixture(autouse=True)
def _gc_settings() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*BEFORE)
    gc.unfreeze()
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def _app() -> tuple[Celeriac, list[tuple[int, ...]]]:
    app = Celeriac("gcw", broker="memory://", result_backend="disabled", from_env=False)
    seen: list[tuple[int, ...]] = []

    @app.task(name="gcw.look")
    async def look() -> None:
        seen.append(gc.get_threshold())

    return app, seen


async def test_a_burst_consumes_with_the_higher_threshold_and_restores_the_settings() -> None:
    app, seen = _app()
    app.tasks["gcw.look"].delay()
    await asyncio.wait_for(Worker(app, burst=True).run(), 10)
    assert seen == [(GC_GEN0_THRESHOLD, 11, 12)]  # while consuming
    assert gc.get_threshold() == BEFORE
    assert gc.get_freeze_count() == 0  # unfrozen


async def test_a_stop_restores_the_settings() -> None:
    app, seen = _app()
    app.tasks["gcw.look"].delay()
    worker = Worker(app)
    run = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(worker.wait_ready(), 10)
    while not seen:
        await asyncio.sleep(0.01)
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 11, 12)
    assert gc.get_freeze_count() > 0
    worker.stop()
    await asyncio.wait_for(run, 10)
    assert gc.get_threshold() == BEFORE
    assert gc.get_freeze_count() == 0


async def test_a_cancelled_run_restores_the_settings() -> None:
    app, seen = _app()
    app.tasks["gcw.look"].delay()
    worker = Worker(app)
    run = asyncio.ensure_future(worker.run())
    while not seen:  # consuming
        await asyncio.sleep(0.01)
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 11, 12)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    assert gc.get_threshold() == BEFORE
    assert gc.get_freeze_count() == 0


async def test_a_shutdown_that_fails_still_restores_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _seen = _app()
    app.tasks["gcw.look"].delay()
    real = worker_module.shut_down

    async def failing(*args: object) -> None:
        await real(*args)  # type: ignore[arg-type]
        raise RuntimeError("shutdown broke")

    monkeypatch.setattr(worker_module, "shut_down", failing)
    with pytest.raises(RuntimeError, match="shutdown broke"):
        await asyncio.wait_for(Worker(app, burst=True).run(), 10)
    assert gc.get_threshold() == BEFORE
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    ("threshold", "consuming"),
    [
        ((0, 11, 12), (0, 11, 12)),  # automatic collection off: stays off
        ((20_000, 11, 12), (20_000, 11, 12)),  # higher already: never lowered
        ((700, 11, 12), (GC_GEN0_THRESHOLD, 11, 12)),
    ],
)
def test_the_threshold_is_only_raised(
    threshold: tuple[int, int, int], consuming: tuple[int, int, int]
) -> None:
    gc.set_threshold(*threshold)
    restore = consuming_gc()
    try:
        assert gc.get_threshold() == consuming
    finally:
        restore()
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


def test_a_worker_at_rest_gives_freed_heap_pages_back_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from celeriac.worker import collector

    calls: list[int] = []
    monkeypatch.setattr(collector, "release_freed_memory", lambda: calls.append(1) or True)
    trimmer = collector.HeapTrimmer()
    assert trimmer.rest(processed=0, running=0)  # start: what start-up freed
    assert not trimmer.rest(processed=0, running=0)  # still idle: once is enough
    assert not trimmer.rest(processed=500, running=3)  # busy: never
    assert trimmer.rest(processed=900, running=0)  # at rest after work
    assert not trimmer.rest(processed=900, running=0)
    assert len(calls) == 2


def test_freeing_heap_pages_is_skipped_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from celeriac.worker import collector

    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(collector, "_libc", None)
    monkeypatch.setattr(collector.ctypes, "CDLL", no_libc)
    assert collector.release_freed_memory() is False
    assert collector.release_freed_memory() is False  # looked up once


def test_freeing_heap_pages_lowers_the_resident_size_after_a_burst_of_garbage() -> None:
    from celeriac.worker import collector

    if not collector.release_freed_memory():
        pytest.skip("no glibc malloc_trim on this system")

    def rss_kib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4

    junk = [bytes(3000) for _ in range(20_000)]  # 60 MB of blocks too large for pymalloc
    del junk[1::2]  # every other one freed: the heap cannot shrink from its top alone
    del junk[: len(junk) - 1]
    before = rss_kib()
    assert collector.release_freed_memory()
    assert rss_kib() < before - 20_000  # more than 20 MB given back
