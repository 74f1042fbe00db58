"""``celeriac worker``: run a worker for an app (argument parsing only).

The worker itself runs in ``_run_worker.py``: in a lean image without click when started by the
``celeriac`` program, in this process when the command is invoked from Python (tests).
"""

from __future__ import annotations

from dataclasses import replace

import click

from ..exceptions import ConfigurationError
from ..gevent_patch import POOL_ENV
from ..worker.autoscale import DEFAULT_IDLE_S, Autoscale
from ..worker.identity import expand_worker_id
from ..worker.pools import DEFAULT_CONCURRENCY, POOLS
from ..worker.recycling import parse_size_kib
from . import _run_worker
from ._common import get_state, split_names
from ._options import app_options
from ._run_worker import LOG_FORMAT, WorkerOptions, configure_log_format, configure_logging, serve

__all__ = ["LOG_FORMAT", "configure_logging", "worker"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "fatal")

#: Celery's pool names -> celeriac's pools (each said in the -P help and docs/cli.md)
POOL_ALIASES = {"prefork": "processes", "solo": "threads", "thread": "threads", "process": "processes"}

#: Celery's flags that have nothing to turn on or off here, with the log line that says so
NOTHING_TO_DO = {
    "without_gossip": "--without-gossip: celeriac workers do not gossip (nothing to turn off)",
    "without_mingle": "--without-mingle: celeriac workers do not mingle at start (nothing to turn off)",
    "without_heartbeat": "--without-heartbeat: celeriac's liveness is one Redis key per worker with a TTL, "
    "which `celeriac status` reads (nothing to turn off)",
    "task_events": "-E/--task-events: celeriac has no event stream to switch on; each stored outcome and "
    "the worker's heartbeat are in Redis",
}


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
    type=click.Choice((*POOLS, *POOL_ALIASES), case_sensitive=False),
    default="asyncio",
    show_default=True,
    envvar=list(POOL_ENV),
    show_envvar=True,
    help="asyncio: coroutines on the loop, sync tasks in threads. threads: one thread per slot. "
    "processes (Celery's prefork): one child process per slot, for CPU-bound sync tasks. gevent: one "
    "greenlet per slot, for blocking I/O in sync code (needs celeriac[gevent]; patched before anything "
    "is imported). solo (Celery's): threads with one slot: one task at a time.",
)
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    show_envvar=True,
    help="Logging level (to stderr). warning (Celery's default): one line per task failed, retried, "
    "dead-lettered, revoked or expired, plus the worker's start and stop lines; info adds one line per "
    "success with its runtime.",
)
@click.option(
    "--log-format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    show_envvar=True,
    help="json: one JSON object per line, a line for every task outcome (for CloudWatch, Loki, "
    "Elasticsearch; fields in docs/outcomes.md).",
)
@click.option(
    "-n",
    "--worker-id",
    default=None,
    envvar="CELERIAC_WORKER_ID",
    show_envvar=True,
    help="A unique name for this worker: %h (host name), %n (without domain), %d (domain), %i and %I "
    "(process index: 0 and empty for the worker) are expanded as in Celery, e.g. worker1@%h. A worker "
    "refuses to start with the id of a live one. Default: host-pid-random.",
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
@click.option(
    "--without-events",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Do not record task outcomes for the dashboard and /metrics (setting monitor_events).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    metavar="PORT",
    show_envvar=True,
    help="Serve Prometheus /metrics (read from Redis: the whole cluster's figures) on "
    "--metrics-address:PORT. Needs celeriac[dashboard].",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    show_envvar=True,
    help="Address of --metrics-port.",
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    show_envvar=True,
    help="Celery's worker_prefetch_multiplier: accepted; celeriac takes messages only for free slots, "
    "so nothing is reserved ahead whatever N is (the worker logs it).",
)
@click.option(
    "--logfile",
    "-f",
    default=None,
    metavar="PATH",
    show_envvar=True,
    help="Log to this file instead of stderr.",
)
@click.option(
    "--pidfile",
    default=None,
    metavar="PATH",
    show_envvar=True,
    help="Write the worker's pid here; refuse to start while it names a running process; removed at exit.",
)
@click.option(
    "-E",
    "--task-events",
    is_flag=True,
    default=False,
    help="Accepted for Celery: nothing to switch on (logged).",
)
@click.option(
    "--without-gossip", is_flag=True, default=False, help="Accepted for Celery: nothing to turn off (logged)."
)
@click.option(
    "--without-mingle", is_flag=True, default=False, help="Accepted for Celery: nothing to turn off (logged)."
)
@click.option(
    "--without-heartbeat",
    is_flag=True,
    default=False,
    help="Accepted for Celery: nothing to turn off (logged).",
)
@click.option(
    "-O",
    "optimization",
    type=click.Choice(("fair", "default"), case_sensitive=False),
    default=None,
    help="Accepted for Celery: celeriac never reserves beyond free slots, so every worker is -O fair.",
)
@click.option(
    "-B",
    "--beat",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Also run a periodic scheduler (the app's beat_schedule). Any number of workers may: each "
    "slot still runs once.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int | None,
    pool: str,
    loglevel: str,
    log_format: str,
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
    without_events: bool,
    metrics_port: int | None,
    metrics_address: str,
    prefetch_multiplier: int | None,
    logfile: str | None,
    pidfile: str | None,
    task_events: bool,
    without_gossip: bool,
    without_mingle: bool,
    without_heartbeat: bool,
    optimization: str | None,
    beat: bool,
) -> None:
    """Run a worker: consume queues and execute the app's tasks.

    The first SIGTERM/SIGINT stops fetching and lets running tasks finish within
    worker_shutdown_grace_s; a second one hands them back to the queue at once.
    """
    pool = pool.lower()
    given = {
        "without_gossip": without_gossip,
        "without_mingle": without_mingle,
        "without_heartbeat": without_heartbeat,
        "task_events": task_events,
    }
    notes = [line for flag, line in NOTHING_TO_DO.items() if given[flag]]
    if optimization:
        notes.append(
            f"-O {optimization}: celeriac never reserves beyond free slots (every worker is -O fair)"
        )
    if pool == "solo":
        notes.append("-P solo: the threads pool with one slot (one task at a time)")
        concurrency = 1
    pool = POOL_ALIASES.get(pool, pool)
    try:
        max_memory_kib = parse_size_kib(max_memory_per_child) if max_memory_per_child else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-memory-per-child") from None
    try:
        scale = Autoscale.parse(autoscale, autoscale_idle) if autoscale else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--autoscale") from None
    if worker_id is not None:
        try:
            expand_worker_id(worker_id)  # checked here: a bad -n is a usage error
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="-n/--worker-id") from None
    options = WorkerOptions(
        queues=split_names(queues),
        concurrency=concurrency,
        pool=pool,
        loglevel=loglevel,
        log_format=log_format,
        worker_id=worker_id,
        burst=burst,
        include=split_names(include),
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_kib=max_memory_kib,
        max_child_age=max_child_age,
        autoscale=(scale.max, scale.min, scale.idle_s) if scale else None,
        events=not without_events,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        prefetch_multiplier=prefetch_multiplier,
        logfile=logfile,
        pidfile=pidfile,
        notes=notes,
        beat=beat,
    )
    state = get_state(ctx)
    if _run_worker.REEXEC:
        if not state.app_spec:
            state.app(required=True)  # raises the usage error
        broker = state.broker_url if state.broker_from_command_line else None
        _run_worker.reexec_lean(replace(options, app_spec=state.app_spec, broker_url=broker))
    if logfile:
        configure_logging(loglevel, logfile)
    else:
        configure_logging(loglevel)
    configure_log_format(log_format)
    serve(state.app(required=True), options)
