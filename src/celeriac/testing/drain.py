"""Run a real worker in this process until the queues are empty, and re-raise the first failure.

Why a real :class:`~celeriac.worker.Worker` and not an inline loop: tests then go through the same
fetch, lease, settle, retry and dead-letter paths as production, with every message encoded and
decoded. The worker runs in burst mode, so it stops by itself once nothing is ready, running or
delayed in its queues. Delayed messages are waited for: keep countdowns short in tests, or run the
app on a :class:`~celeriac.testing.FakeClock` and advance it past them before draining.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..eager import run_coroutine_blocking
from ..exceptions import CeleriacError
from ..execution import Outcome
from ..worker.worker import Worker, WorkerStats

if TYPE_CHECKING:
    from ..app import Celeriac

__all__ = ["DrainResult", "drain", "drain_async", "is_failure"]

DEFAULT_TIMEOUT_S = 30.0


def is_failure(outcome: Outcome) -> bool:
    """True for an outcome a test should hear about: a task error (including an expired task) or a
    dead-lettered message. Retries are not failures: the task runs again."""
    if outcome.kind == "retry":
        return False
    return outcome.kind == "dead" or outcome.exc is not None


@dataclass
class DrainResult:
    """What a drain did.

    Attributes:
        outcomes: every recorded outcome, in the order the worker recorded them.
        stats: the worker's counters.
    """

    outcomes: list[Outcome] = field(default_factory=list)
    stats: WorkerStats = field(default_factory=WorkerStats)

    @property
    def failures(self) -> list[Outcome]:
        """The outcomes for which :func:`is_failure` is true."""
        return [o for o in self.outcomes if is_failure(o)]

    @property
    def succeeded(self) -> list[Outcome]:
        """The outcomes of tasks that returned a value."""
        return [o for o in self.outcomes if o.kind == "ack" and o.exc is None]


def default_queues(app: Celeriac) -> list[str]:
    """The queues a drain consumes when none are given: the default queue, every queue named by a
    registered task or by ``task_routes``, and (``memory://``) every queue the broker has seen."""
    names = [app.conf.task_default_queue]
    names += [t.queue for t in app.tasks.values() if t.queue]
    routes = app.conf.task_routes
    for router in routes if isinstance(routes, (list, tuple)) else (routes,):
        if not callable(router):  # a router function's queues are known only when it is called
            names += [str(v.get("queue") if isinstance(v, dict) else v) for v in router.values()]
    from ..broker.memory import MemoryBroker

    broker = app.broker
    if isinstance(broker, MemoryBroker):
        names += broker.queue_names()
    return list(dict.fromkeys(names))


async def drain_async(
    app: Celeriac,
    queues: Sequence[str] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    raise_first_failure: bool = True,
    concurrency: int | None = None,
    pool: str = "asyncio",
) -> DrainResult:
    """Run a burst worker on the running event loop until ``queues`` are empty.

    Args:
        app: the app whose broker and tasks are used (any broker: ``memory://`` or Redis).
        queues: queues in priority order (default: :func:`default_queues`).
        timeout_s: give up after this many seconds: the worker is stopped at once (cold) and
            :class:`TimeoutError` is raised.
        raise_first_failure: stop at the first failure (see :func:`is_failure`) and raise it: the task's
            own exception, or a :class:`CeleriacError` naming the reason when there is none.
        concurrency, pool: passed to :class:`~celeriac.worker.Worker`.

    Returns:
        The recorded outcomes and the worker's counters.

    Raises:
        TimeoutError: the queues were not empty within ``timeout_s``.
        Exception: the first failure, when ``raise_first_failure``.
    """
    result = DrainResult()
    first: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        result.outcomes.append(outcome)
        if raise_first_failure and not first and is_failure(outcome):
            first.append(outcome)
            worker.stop()  # fail fast: the test wants this error, not the rest of the queue

    worker = Worker(
        app,
        queues=list(queues) if queues is not None else default_queues(app),
        burst=True,
        on_outcome=on_outcome,
        concurrency=concurrency,
        pool=pool,
    )
    result.stats = worker.stats
    run = asyncio.ensure_future(worker.run())
    done, _ = await asyncio.wait({run}, timeout=timeout_s)
    if not done:
        worker.stop(cold=True)
        await run
        left = {q: app.broker.stats(q) for q in worker.queues}
        raise TimeoutError(f"drain: queues not empty after {timeout_s} s: {left}")
    run.result()  # a crash of the worker itself
    if first:
        raise _as_exception(first[0])
    if raise_first_failure:
        # messages dead-lettered by reclaim (max_deliveries) have no outcome of their own
        unseen = result.stats.dead_lettered - sum(1 for o in result.outcomes if o.kind == "dead")
        if unseen > 0:
            raise CeleriacError(f"{unseen} message(s) dead-lettered after max_deliveries")
    return result


def drain(
    app: Celeriac,
    queues: Sequence[str] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    raise_first_failure: bool = True,
    concurrency: int | None = None,
    pool: str = "asyncio",
) -> DrainResult:
    """Blocking form of :func:`drain_async` (same arguments), for sync tests.

    Called from a thread that already runs an event loop (an async test), the worker runs on a new
    loop in a helper thread, so the caller's loop is not re-entered.
    """
    kwargs: dict[str, Any] = {
        "timeout_s": timeout_s,
        "raise_first_failure": raise_first_failure,
        "concurrency": concurrency,
        "pool": pool,
    }
    result: DrainResult = run_coroutine_blocking(drain_async(app, queues, **kwargs), name="celeriac-drain")
    return result


def _as_exception(outcome: Outcome) -> BaseException:
    if outcome.exc is not None:
        return outcome.exc
    return CeleriacError(f"task {outcome.task_name}[{outcome.task_id}] dead-lettered: {outcome.reason}")
