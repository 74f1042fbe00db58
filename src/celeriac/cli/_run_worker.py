"""The process of ``celeriac worker`` once its command line is parsed: a lean image without click.

Why a second image: click (and the argument parsing it brings) stays imported for the life of the
process that parsed the command line, a measurable share of an idle worker (docs/design.md), for
nothing. So the ``celeriac`` command parses and validates the options with click, then re-executes
the interpreter as
``python -m celeriac.cli._run_worker`` with the parsed options in ``CELERIAC_WORKER_SPEC`` (same pid,
same stdin/stdout/stderr; a supervisor sees one process). This image imports neither click nor the
other subcommands: it applies gevent's patch when asked (first, as ``gevent_patch.py`` requires),
sets up logging, imports the app and runs the worker. A recycled worker re-executes this same image.

``celeriac worker`` invoked in-process (``CliRunner`` in tests, ``main()`` called from Python) does
not re-execute: it runs :func:`serve` directly. Only :func:`celeriac.cli.run`, the program's entry
point, enables the re-execution (:data:`REEXEC`).

Imports at the top stay minimal (``json``, ``os``, ``sys``): the gevent patch must precede the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .._registry import BUILTIN_TASKS

if TYPE_CHECKING:
    from ..app import Celeriac

SPEC_ENV = "CELERIAC_WORKER_SPEC"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: set by ``celeriac.cli.run`` (the real program): parse with click, then run the worker in a lean image
REEXEC = False


@dataclass(frozen=True)
class WorkerOptions:
    """``celeriac worker``'s parsed options (JSON-able, for the lean image)."""

    queues: list[str]
    concurrency: int | None
    pool: str
    loglevel: str
    worker_id: str | None
    burst: bool
    include: list[str]
    soft_time_limit: float | None
    time_limit: float | None
    max_tasks_per_child: int | None
    max_memory_kib: int | None
    max_child_age: float | None
    autoscale: tuple[int, int, float] | None  # MAX, MIN, idle seconds
    app_spec: str | None = None
    broker_url: str | None = None  # a --broker typed on the command line (overrides the app's)
    events: bool = True  # record task outcomes (--without-events: False)
    metrics_port: int | None = None  # serve /metrics on 127.0.0.1:PORT (needs celeriac[dashboard])
    metrics_address: str = "127.0.0.1"
    log_format: str = "text"  # or "json": one JSON object per line (celeriac.outcomes)
    prefetch_multiplier: int | None = None
    logfile: str | None = None
    pidfile: str | None = None
    notes: list[str] = field(default_factory=list)  # Celery flags accepted with nothing to do: logged
    beat: bool = False  # -B: run a periodic scheduler in this worker


def configure_logging(level: str, logfile: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level``; Redis client chatter stays at WARNING. A failure's
    traceback follows its outcome line at INFO and below (``celeriac.outcomes.TextFormatter``).

    At WARNING (the default, Celery's) the worker's own lines (logger ``celeriac.worker``: start,
    stop, autoscale, a few lines per worker life, never one per task) stay at INFO, as Celery prints
    its banner whatever the level: the per-task lines (``celeriac.task``) follow ``level``."""
    import logging

    from ..outcomes import TextFormatter

    level = "CRITICAL" if level.upper() == "FATAL" else level.upper()
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("redis").setLevel(max(logging.WARNING, logging.getLogger().level))
    lifecycle = logging.getLogger("celeriac.worker")
    lifecycle.setLevel(logging.INFO if level == "WARNING" else logging.NOTSET)


def configure_log_format(log_format: str) -> None:
    """``"json"``: every log line becomes one JSON object, and every task outcome is logged
    (successes included); ``"text"``: as :func:`configure_logging` left it."""
    if log_format != "json":
        return
    import logging

    from ..outcomes import JsonFormatter

    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
    logging.getLogger("celeriac.task").setLevel(logging.INFO)


def error_line(exc: BaseException) -> str:
    """One line describing an error from celeriac's tree (or a Redis client error), URLs redacted."""
    from .._urls import redact
    from ..exceptions import CeleriacError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, CeleriacError):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)


def reexec_lean(options: WorkerOptions) -> None:
    """Replace this process with the lean worker image running ``options``. Never returns."""
    import subprocess

    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    env = {**os.environ, SPEC_ENV: json.dumps(asdict(options))}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, [sys.executable, *flags, "-m", __name__], env)


def serve(app: Celeriac, options: WorkerOptions) -> None:
    """Build the worker, run it until it stops, log a summary; re-execute it after a recycle."""
    import logging

    from .. import signals

    log = logging.getLogger("celeriac.worker")

    if signals.setup_logging.receivers:  # as in Celery: the receiver configures logging itself
        signals.setup_logging.send(
            sender=None,
            loglevel=options.loglevel.upper(),
            logfile=options.logfile,
            format=LOG_FORMAT,
            colorize=False,
        )
    for note in options.notes:
        log.info("%s", note)
    if options.prefetch_multiplier is not None:
        app.conf.worker_prefetch_multiplier = options.prefetch_multiplier
    with _pidfile(options.pidfile):
        _serve(app, options, log)


@contextlib.contextmanager
def _pidfile(path: str | None) -> Iterator[None]:
    """Write this process's pid to ``path`` (Celery's --pidfile); refuse while it names a live process."""
    if path is None:
        yield
        return
    from ..exceptions import ConfigurationError

    try:
        with open(path) as existing:
            old = int(existing.read().strip() or 0)
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid():
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ConfigurationError("--pidfile", f"{path} names process {old}, which is running") from None
        else:
            raise ConfigurationError("--pidfile", f"{path} names process {old}, which is running") from None
    with open(path, "w") as out:
        out.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _serve(app: Celeriac, options: WorkerOptions, log: Any) -> None:
    from .._urls import redact
    from .._version import __version__
    from ..worker import Worker
    from ..worker.autoscale import Autoscale
    from ..worker.limits import TimeLimits
    from ..worker.recycling import Recycling, reexec

    instance = Worker(
        app,
        queues=options.queues or None,
        concurrency=options.concurrency,
        pool=options.pool,
        worker_id=options.worker_id,
        burst=options.burst,
        limits=TimeLimits(soft_s=options.soft_time_limit, hard_s=options.time_limit),
        recycling=Recycling(options.max_tasks_per_child, options.max_memory_kib, options.max_child_age),
        autoscale=Autoscale(*options.autoscale) if options.autoscale else None,
        include=options.include,
        events=options.events,
        beat=options.beat,
    )
    if options.metrics_port is not None:
        from ..dashboard.metrics import serve_metrics

        serve_metrics(app, options.metrics_port, options.metrics_address)
    log.info(
        "celeriac %s: app %s, broker %s, %d task(s) registered",
        __version__,
        app.main or "?",
        redact(app.conf.broker_url),
        sum(1 for name in app.tasks if name not in BUILTIN_TASKS),
    )
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


def main() -> None:
    """The lean image: options from ``CELERIAC_WORKER_SPEC``; exit status as ``celeriac worker``'s."""
    raw: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    if raw.get("autoscale") is not None:
        raw["autoscale"] = tuple(raw["autoscale"])
    options = WorkerOptions(**raw)
    if options.pool == "gevent":
        from ..gevent_patch import patch

        patch()
    configure_logging(options.loglevel, options.logfile)
    configure_log_format(options.log_format)
    from ..exceptions import CeleriacError, ConfigurationError
    from ._loader import AppLoadError, load_app

    try:
        assert options.app_spec is not None  # checked before re-executing
        app = load_app(options.app_spec)
    except AppLoadError as exc:  # a usage error, reported as click reports one
        usage = "Usage: celeriac worker [OPTIONS]\nTry 'celeriac worker -h' for help.\n\n"
        sys.stderr.write(f"{usage}Error: {error_line(exc)}\n")
        sys.exit(2)
    except ConfigurationError as exc:  # an invalid setting the app read while being imported
        sys.stderr.write(f"Error: {error_line(exc)}\n")
        sys.exit(1)
    try:
        if options.broker_url:
            app.conf.broker_url = options.broker_url
        serve(app, options)
    except Exception as exc:
        redis = sys.modules.get("redis")
        if isinstance(exc, CeleriacError) or (redis is not None and isinstance(exc, redis.RedisError)):
            sys.stderr.write(f"Error: {error_line(exc)}\n")
            sys.exit(1)
        raise
    finally:
        app.close()


if __name__ == "__main__":
    main()
