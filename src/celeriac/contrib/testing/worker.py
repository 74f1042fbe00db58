"""``start_worker(app, ...)``: Celery's test worker, a real celeriac worker in a thread of this process.

Celery's signature and meaning (``celery.contrib.testing.worker.start_worker``): a context manager
that starts a worker consuming ``app``'s queues on the configured broker (a real Redis, or
``memory://`` shared with the test), pings it with a ``celery.ping`` task unless
``perform_ping_check=False``, yields it, and stops it warm on exit, failing when it does not stop
within ``shutdown_timeout`` seconds. It also works as Django test cases use it::

    cls.celery_worker = start_worker(app, perform_ping_check=False)
    cls.celery_worker.__enter__()
    ...
    cls.celery_worker.__exit__(None, None, None)
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...exceptions import ConfigurationError
from ...execution import TimeLimits
from ...testing.thread_worker import ThreadWorker
from ...worker.pools import POOLS

if TYPE_CHECKING:
    from ...app import Celeriac
    from ...worker.worker import Worker

__all__ = ["TestWorkController", "start_worker"]

#: Celery's pool names -> (celeriac pool, forced concurrency or None)
_CELERY_POOLS: dict[str, tuple[str, int | None]] = {
    "solo": ("threads", 1),  # one task at a time, as Celery's solo pool
    "prefork": ("processes", None),
    "threads": ("threads", None),
    "thread": ("threads", None),
    "process": ("processes", None),
}
#: Celery worker options that turn off something celeriac does not have (accepted, no effect)
_NOTHING_TO_TURN_OFF = frozenset(
    {"without_heartbeat", "without_mingle", "without_gossip", "optimization", "task_events"}
)
#: the name of the task the ping check sends (Celery's)
PING_TASK = "celery.ping"
WORKER_LOGLEVEL = "error"


class TestWorkController:
    """The running test worker (Celery's ``TestWorkController``): ``app``, ``hostname``, ``pool``,
    ``concurrency``, ``queues``, ``worker`` (the :class:`~celeriac.worker.Worker`), ``outcomes``."""

    __test__ = False  # not a test class, for pytest collecting a module that imports it

    def __init__(self, thread: ThreadWorker, pool: str) -> None:
        self._thread = thread
        self.worker: Worker = thread.worker
        self.app: Celeriac = thread.worker.app
        self.hostname = thread.worker.worker_id
        self.pool = pool
        self.concurrency = thread.worker.concurrency
        self.queues = list(thread.worker.queues)

    @property
    def outcomes(self) -> list[Any]:
        """What the worker recorded (:class:`~celeriac.execution.Outcome`), in order."""
        return list(self._thread.outcomes)

    def reload(self, modules: Sequence[str] | None = None, reload: bool = False, **_: Any) -> None:
        """Import ``modules`` (re-import with ``reload=True``). Tasks registered on the app after the
        worker started are found without it (tasks are looked up by name as messages arrive) — except
        by a ``prefork`` pool, whose children were forked before."""
        for name in modules or ():
            module = importlib.import_module(name)
            if reload:
                importlib.reload(module)

    def ensure_started(self) -> None:
        """Return once the worker consumes its queues (it does when ``start_worker`` yields it)."""
        if self._thread.error is not None:
            raise self._thread.error

    def stop(self, shutdown_timeout: float = 10.0) -> None:
        """Stop warm: running tasks finish; fails after ``shutdown_timeout`` seconds."""
        self._thread.stop(timeout_s=shutdown_timeout)


def _queues(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [q.strip() for q in value.split(",") if q.strip()]
    return list(value)


def _worker_options(app: Celeriac, pool: str, concurrency: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """celeriac ``Worker`` options from Celery's ``start_worker``/``WorkController`` arguments."""
    name = pool.lower()
    if name in _CELERY_POOLS:
        celeriac_pool, forced = _CELERY_POOLS[name]
    elif name in POOLS:
        celeriac_pool, forced = name, None
    else:
        raise ConfigurationError(
            "start_worker(pool=...)",
            f"unknown pool {pool!r}: use solo, prefork, threads, or one of celeriac's ({', '.join(POOLS)})",
        )
    options: dict[str, Any] = {"pool": celeriac_pool, "concurrency": forced or concurrency}
    queues = _queues(kwargs.pop("queues", None)) or [app.conf.task_default_queue]
    excluded = set(_queues(kwargs.pop("exclude_queues", None)))
    options["queues"] = [q for q in queues if q not in excluded]
    if not options["queues"]:
        raise ConfigurationError(
            "start_worker(exclude_queues=...)", "every queue is excluded: nothing to consume"
        )
    if "hostname" in kwargs:
        options["worker_id"] = kwargs.pop("hostname")
    if "include" in kwargs:
        options["include"] = _queues(kwargs.pop("include"))
    soft, hard = kwargs.pop("soft_time_limit", None), kwargs.pop("time_limit", None)
    if soft is not None or hard is not None:
        options["limits"] = TimeLimits(soft_s=soft, hard_s=hard)
    for flag in _NOTHING_TO_TURN_OFF & set(kwargs):
        kwargs.pop(flag)
    for native in ("on_outcome", "recycling", "autoscale", "worker_id", "limits"):
        if native in kwargs:
            options[native] = kwargs.pop(native)
    if kwargs:
        raise ConfigurationError(
            "start_worker",
            f"unsupported option(s) {sorted(kwargs)}: start_worker takes queues, exclude_queues, "
            "hostname, include, time_limit, soft_time_limit, without_heartbeat/mingle/gossip "
            "(nothing to turn off), and celeriac Worker options (docs/porting.md#tests)",
        )
    return options


def ping_task(app: Celeriac) -> Any:
    """The app's ``celery.ping`` task (registered on first use): returns ``"pong"``."""
    task = app.tasks.get(PING_TASK)
    if task is None:

        def ping() -> str:
            return "pong"

        task = app.task(name=PING_TASK, ignore_result=False)(ping)
    return task


@contextmanager
def start_worker(
    app: Celeriac,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorkController]:
    """Start a worker for ``app`` in a thread, yield it (:class:`TestWorkController`), stop it warm.

    Args:
        app: the app whose tasks run; its broker (Redis or ``memory://``) is the worker's.
        concurrency: execution slots (ignored by ``solo``: one).
        pool: ``solo`` (default, as Celery: one task at a time, in a thread), ``prefork`` (child
            processes, forked at start: tasks registered later are not in them), ``threads``,
            ``asyncio``.
        loglevel: level of the ``celeriac`` loggers while the worker runs (any case, or a number).
        logfile: also write the ``celeriac`` log lines to this file while the worker runs.
        perform_ping_check: send ``celery.ping`` and wait for ``"pong"`` before yielding (needs
            results: a ``result_backend`` that is not ``"disabled"``).
        ping_task_timeout: seconds the ping check waits.
        shutdown_timeout: seconds the warm stop may take before this fails.
        **kwargs: ``queues``, ``exclude_queues``, ``hostname``, ``include``, ``time_limit``,
            ``soft_time_limit``, ``without_heartbeat``/``without_mingle``/``without_gossip``
            (nothing to turn off), and :class:`~celeriac.worker.Worker` options.

    Raises:
        ConfigurationError: an unknown pool or option.
        RuntimeError: the worker did not stop within ``shutdown_timeout``.
    """
    options = _worker_options(app, pool, concurrency, dict(kwargs))
    if perform_ping_check:
        ping = ping_task(app)  # registered before a prefork pool forks its children
    logger = logging.getLogger("celeriac")
    level_before = logger.level
    logger.setLevel(loglevel.upper() if isinstance(loglevel, str) else loglevel)
    handler = logging.FileHandler(logfile) if logfile else None
    if handler is not None:
        logger.addHandler(handler)
    thread = ThreadWorker(app, **options)
    try:
        thread.start()
        controller = TestWorkController(thread, pool)
        try:
            if perform_ping_check:
                # to a queue this worker consumes (queues= may leave out the default one)
                pong = ping.apply_async(queue=controller.queues[0]).get(timeout=ping_task_timeout)
                assert pong == "pong", f"the ping task returned {pong!r}"
            yield controller
        finally:
            try:
                thread.stop(timeout_s=shutdown_timeout)
            except TimeoutError:
                raise RuntimeError(
                    f"the test worker did not stop within shutdown_timeout={shutdown_timeout}s; "
                    "raise shutdown_timeout if your tasks take longer"
                ) from None
    finally:
        logger.setLevel(level_before)
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
