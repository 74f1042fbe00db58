"""``celeriac worker``: run a worker for an app (argument parsing and logging set-up only)."""

from __future__ import annotations

import logging
import sys

import click

from .._urls import redact
from .._version import __version__
from ..gevent_patch import POOL_ENV
from ..worker import Worker
from ..worker.autoscale import DEFAULT_IDLE_S, Autoscale
from ..worker.limits import TimeLimits
from ..worker.pools import DEFAULT_CONCURRENCY, POOLS
from ..worker.recycling import Recycling, parse_size_kib, reexec
from ._common import get_state
from ._options import app_options

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def split_names(values: tuple[str, ...]) -> list[str]:
    """``-Q a,b -Q c`` -> ``["a", "b", "c"]`` (order kept: for queues it is the consumption priority)."""
    out: list[str] = []
    for value in values:
        out += [q.strip() for q in value.split(",") if q.strip()]
    return list(dict.fromkeys(out))


split_queues = split_names


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; Redis client chatter stays at WARNING."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("redis").setLevel(max(logging.WARNING, logging.getLogger().level))


@click.command()
@app_options
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    metavar="Q1,Q2",
    show_envvar=True,
    help="Queues to consume, in priority order (comma-separated, repeatable). Default: the app's "
    "task_default_queue.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help=f"Execution slots (default: {DEFAULT_CONCURRENCY['asyncio']} for asyncio and gevent, "
    f"{DEFAULT_CONCURRENCY['threads']} for threads, one child per CPU for processes).",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(POOLS),
    default="asyncio",
    show_default=True,
    envvar=list(POOL_ENV),
    show_envvar=True,
    help="asyncio: coroutines on the loop, sync tasks in threads. threads: one thread per slot. "
    "processes: one child process per slot, for CPU-bound sync tasks. gevent: one greenlet per slot, "
    "for blocking I/O in sync code (needs celeriac[gevent]; patched before anything is imported).",
)
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    show_envvar=True,
    help="Logging level (to stderr).",
)
@click.option(
    "-n",
    "--worker-id",
    default=None,
    envvar="CELERIAC_WORKER_ID",
    show_envvar=True,
    help="A unique name for this worker (default: host-pid-random).",
)
@click.option(
    "--burst",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Exit once the queues are empty (ready and delayed) and nothing runs.",
)
@click.option(
    "-I",
    "--include",
    multiple=True,
    metavar="MOD1,MOD2",
    show_envvar=True,
    help="Task modules to import besides the app (comma-separated, repeatable); with "
    "worker_queue_modules in the app's settings, a worker imports only what its queues need.",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    show_envvar=True,
    help="Default soft time limit of tasks that set none: SoftTimeLimitExceeded is raised inside the task.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    show_envvar=True,
    help="Default hard time limit of tasks that set none: the task fails with TimeLimitExceeded "
    "(processes: the child is killed; gevent: the greenlet is killed; threads: the thread cannot be "
    "stopped and is abandoned).",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    show_envvar=True,
    help="Replace a child process after N tasks (processes); other pools: re-execute the whole worker "
    "after N tasks (it stops fetching and finishes its running tasks first).",
)
@click.option(
    "--max-memory-per-child",
    default=None,
    metavar="SIZE",
    show_envvar=True,
    help="Replace a child (processes), or re-execute the worker (other pools), whose resident memory "
    "after a task reaches SIZE: KiB as in Celery (200000), or with a unit (200MB, 1G).",
)
@click.option(
    "--max-child-age",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    show_envvar=True,
    help="Replace a child (processes), or re-execute the worker (other pools), once it is this old, "
    "minus a random spread of up to 10% so that they do not restart together.",
)
@click.option(
    "--autoscale",
    default=None,
    metavar="MAX,MIN",
    show_envvar=True,
    help="Let the concurrency follow the backlog between MIN (the start) and MAX: grows at once when "
    "every slot is busy and messages wait, shrinks after --autoscale-idle. Overrides -c.",
)
@click.option(
    "--autoscale-idle",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_IDLE_S,
    show_default=True,
    metavar="SECONDS",
    show_envvar=True,
    help="How long unused slots are kept before an autoscaled worker shrinks.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int | None,
    pool: str,
    loglevel: str,
    worker_id: str | None,
    burst: bool,
    include: tuple[str, ...],
    soft_time_limit: float | None,
    time_limit: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: str | None,
    max_child_age: float | None,
    autoscale: str | None,
    autoscale_idle: float,
) -> None:
    """Run a worker: consume queues and execute the app's tasks.

    The first SIGTERM/SIGINT stops fetching and lets running tasks finish within
    worker_shutdown_grace_s; a second one hands them back to the queue at once.
    """
    try:
        max_memory_kib = parse_size_kib(max_memory_per_child) if max_memory_per_child else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-memory-per-child") from None
    try:
        scale = Autoscale.parse(autoscale, autoscale_idle) if autoscale else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--autoscale") from None
    configure_logging(loglevel)
    app = get_state(ctx).app(required=True)
    log = logging.getLogger("celeriac.worker")
    instance = Worker(
        app,
        queues=split_queues(queues) or None,
        concurrency=concurrency,
        pool=pool,
        worker_id=worker_id,
        burst=burst,
        limits=TimeLimits(soft_s=soft_time_limit, hard_s=time_limit),
        recycling=Recycling(max_tasks_per_child, max_memory_kib, max_child_age),
        autoscale=scale,
        include=split_names(include),
    )
    log.info(
        "celeriac %s: app %s, broker %s, %d task(s) registered",
        __version__,
        app.main or "?",
        redact(app.conf.broker_url),
        len(app.tasks),
    )
    for warning in app.startup_warnings():
        log.warning("%s", warning)
    instance.start()
    s = instance.stats
    log.info(
        "processed %d: %d succeeded, %d failed, %d retried, %d dead-lettered",
        s.processed,
        s.succeeded,
        s.failed,
        s.retried,
        s.dead_lettered,
    )
    if instance.recycle_reason:
        # Drained and stopped for a recycling limit: start afresh in this same process (same pid,
        # so a supervisor sees no exit), which returns every leaked byte to the system.
        log.warning("re-executing the worker (%s)", instance.recycle_reason)
        app.close()
        reexec()
