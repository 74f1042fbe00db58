"""``celeriac inspect active | scheduled | stats | ping``: Celery's ``celery inspect`` for operators.

Read from Redis (``celeriac.inspect``): workers are first asked for a fresh heartbeat and waited for up
to ``-t/--timeout`` seconds. Output as the other listing commands (``_output.py``): a table on a
terminal, tab-separated lines when piped, ``-j/--json`` one JSON document in Celery's shape (a dict
keyed by worker name; by queue name for ``scheduled``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._common import console, format_age_s, get_state, split_names
from ._options import app_options
from ._output import Mode, note, output_mode, print_json, print_tsv

if TYPE_CHECKING:
    from ..inspect import Inspect

F = TypeVar("F", bound=Callable[..., Any])


def worker_options(func: F) -> F:
    """``-d/--destination``, ``-t/--timeout``, ``-j/--json``, ``--table`` (Celery's spellings)."""
    func = click.option(
        "--table", "as_table", is_flag=True, help="Print a table even when stdout is not a terminal."
    )(func)
    func = click.option(
        "-j", "--json", "as_json", is_flag=True, help="Print one JSON document (Celery's shape)."
    )(func)
    func = click.option(
        "-t",
        "--timeout",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        show_envvar=True,
        help="Seconds to wait for workers to answer with a fresh heartbeat (0: read the last one).",
    )(func)
    func = click.option(
        "-d",
        "--destination",
        multiple=True,
        metavar="WORKER[,WORKER]",
        show_envvar=True,
        help="Only these workers (worker@host names; comma-separated, repeatable). Default: all.",
    )(func)
    return app_options(func)


def _inspect(ctx: click.Context, destination: tuple[str, ...], timeout: float, **options: Any) -> Inspect:
    from ..inspect import Inspect

    return Inspect(get_state(ctx).app(), split_names(destination) or None, timeout, **options)


def _live(inspect: Inspect) -> list[Any]:
    """The live workers asked about; exits 1 (Celery: "no nodes replied") when there are none."""
    live = inspect.workers()
    unknown = inspect.unknown_destinations(live)
    if unknown:
        note(f"no live worker named {', '.join(unknown)}")
    if not live:
        raise click.ClickException(
            "no live workers" + (" of that destination" if inspect.destination else "")
        )
    return live


@click.group(name="inspect")
def inspect() -> None:
    """Inspect live workers, as `celery inspect`: active, scheduled, stats, ping.

    \b
    celeriac inspect active -A shop.tasks:app
    celeriac inspect stats -d worker1@host --json
    celeriac inspect scheduled --limit 50 | cat
    """


@inspect.command()
@worker_options
@click.pass_context
def active(
    ctx: click.Context, destination: tuple[str, ...], timeout: float, as_json: bool, as_table: bool
) -> None:
    """Tasks running now, per worker: id, name, args (a repr cut to 100 characters), started, runtime.

    Piped: a header line and one line per task (worker, id, name, args, kwargs, started, runtime_s,
    queue). --json: {worker: [{id, name, args, kwargs, type, hostname, time_start, acknowledged,
    delivery_info}, ...]}. At most 100 tasks per worker are listed (the longest-running first); the
    stats command's active_count says how many run.
    """
    from ..inspect import active_of, iso_utc

    mode = output_mode(as_json, as_table)
    live = _live(_inspect(ctx, destination, timeout))
    now = time.time()
    if mode == "json":
        print_json({w.worker_id: active_of(w) for w in live})
        return
    rows = []
    for w in live:
        for t in active_of(w):
            started = t.get("time_start")
            rows.append(
                (
                    w.worker_id,
                    t.get("id", ""),
                    t.get("name", ""),
                    t.get("args", ""),
                    t.get("kwargs", ""),
                    iso_utc(started) if isinstance(started, (int, float)) else "",
                    f"{now - started:.1f}" if isinstance(started, (int, float)) else "",
                    (t.get("delivery_info") or {}).get("routing_key", ""),
                )
            )
    header = ("worker", "id", "name", "args", "kwargs", "started", "runtime_s", "queue")
    _print(mode, header, rows, f"Active tasks ({len(rows)} on {len(live)} worker(s))")


@inspect.command()
@app_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    show_envvar=True,
    help="At most this many tasks (the soonest due).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first (the next page).")
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    metavar="Q1,Q2",
    help="Only these queues (default: the queues workers consumed, and the default queue).",
)
@click.option(
    "-d", "--destination", multiple=True, hidden=True, help="Accepted, ignored (see the description)."
)
@click.option("-t", "--timeout", type=float, default=1.0, hidden=True, help="Accepted, ignored.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--table", "as_table", is_flag=True, help="Print a table even when stdout is not a terminal.")
@click.pass_context
def scheduled(
    ctx: click.Context,
    limit: int,
    offset: int,
    queues: tuple[str, ...],
    destination: tuple[str, ...],
    timeout: float,
    as_json: bool,
    as_table: bool,
) -> None:
    """Tasks waiting for an eta/countdown (or a retry delay, or their turn under a rate limit).

    celeriac keeps these in Redis, in each queue's delayed set, not on workers (Celery holds them in
    worker memory): so they are listed per queue, soonest first, one page at a time (--limit,
    --offset) whatever the number waiting; -d/--destination is accepted and has nothing to select.
    Piped: a header line and one line per task (queue, eta, waiting_for, id, name, args, kwargs,
    priority); the count per queue goes to stderr. --json: {"queues": {queue: [{eta, priority, queue,
    waiting_for, request: {id, name, args, kwargs, ...}}, ...]}, "total": {queue: n}}.
    """
    from ..inspect import Inspect

    mode = output_mode(as_json, as_table)
    names = split_names(queues)
    page = Inspect(
        get_state(ctx).app(), None, 0, limit=limit, offset=offset, queues=names or None
    ).scheduled_page()
    if destination:
        note("note: delayed tasks wait in Redis, not on a worker: -d/--destination selects nothing here")
    if mode == "json":
        grouped: dict[str, list[dict[str, Any]]] = {}
        for queue, entry in page.entries:
            grouped.setdefault(queue, []).append(entry)
        print_json({"queues": grouped, "total": page.totals})
        return
    rows = [
        (
            queue,
            e["eta"],
            e["waiting_for"],
            e["request"].get("id") or "",
            e["request"].get("name") or e["request"].get("error", ""),
            e["request"].get("args", ""),
            e["request"].get("kwargs", ""),
            e["priority"],
        )
        for queue, e in page.entries
    ]
    total = sum(page.totals.values())
    shown = f"{offset + 1}-{offset + len(rows)}" if rows else "none"
    title = f"Scheduled (delayed in Redis): {shown} of {total}"
    counts = ", ".join(f"{q} {n}" for q, n in page.totals.items() if n) or "none waiting"
    header = ("queue", "eta", "waiting_for", "id", "name", "args", "kwargs", "priority")
    _print(mode, header, rows, title, f"per queue: {counts}")


STATS_COLUMNS = (
    "worker",
    "hostname",
    "pid",
    "pool",
    "concurrency",
    "running",
    "processed",
    "failed",
    "rss_kb",
    "uptime",
    "queues",
    "version",
    "heartbeat_age_s",
)


@inspect.command()
@worker_options
@click.pass_context
def stats(
    ctx: click.Context, destination: tuple[str, ...], timeout: float, as_json: bool, as_table: bool
) -> None:
    """Per-worker stats from the heartbeat: pool, concurrency, running, processed and failed counts,
    resident size, uptime, queues, version.

    Piped: a header line and one line per worker. --json: {worker: {pid, hostname, uptime, pool:
    {implementation, max-concurrency, running}, processed, failed, rss_kb, queues, version,
    heartbeat_age_s, heartbeat: {every heartbeat field}}}.
    """
    from ..inspect import stats_of

    mode = output_mode(as_json, as_table)
    live = _live(_inspect(ctx, destination, timeout))
    now = time.time()
    all_stats = {w.worker_id: stats_of(w, now) for w in live}
    if mode == "json":
        print_json(all_stats)
        return
    rows = []
    for name, s in all_stats.items():
        up = s["uptime"]
        rows.append(
            (
                name,
                s["hostname"] or "",
                _blank(s["pid"]),
                s["pool"]["implementation"] or "",
                _blank(s["pool"]["max-concurrency"]),
                _blank(s["pool"]["running"]),
                _blank(s["processed"]),
                _blank(s["failed"]),
                _blank(s["rss_kb"]),
                (str(up) if mode == "plain" else format_age_s(up)) if up is not None else "",
                ",".join(s["queues"]),
                s["version"] or "",
                _blank(s["heartbeat_age_s"]),
            )
        )
    header = (
        STATS_COLUMNS if mode == "table" else tuple("uptime_s" if c == "uptime" else c for c in STATS_COLUMNS)
    )
    _print(mode, header, rows, f"Workers ({len(rows)} live)")


@inspect.command()
@worker_options
@click.pass_context
def ping(
    ctx: click.Context, destination: tuple[str, ...], timeout: float, as_json: bool, as_table: bool
) -> None:
    """Which workers answer within the timeout. Exits 1 when none does.

    Piped: worker and reply (pong or "no reply") per line. --json: {worker: {"ok": "pong"}}.
    """
    mode = output_mode(as_json, as_table)
    inspect_ = _inspect(ctx, destination, max(timeout, 0.1))  # a ping needs an answer to wait for
    live = _live(inspect_)
    answered = inspect_.answered
    if mode == "json":
        print_json({w.worker_id: {"ok": "pong"} for w in live if w.worker_id in answered})
    else:
        rows = [(w.worker_id, "pong" if w.worker_id in answered else "no reply") for w in live]
        _print(mode, ("worker", "reply"), rows, "Ping")
    if not answered:
        raise click.ClickException(f"no worker answered within {inspect_.timeout:g}s")


def _blank(value: object) -> str:
    return "" if value is None else str(value)


def _print(mode: Mode, header: tuple[str, ...], rows: list[tuple[Any, ...]], title: str, *notes: str) -> None:
    if mode == "plain":
        print_tsv(header, rows)
        for line in notes:
            note(line)
        return
    from rich.table import Table

    out = console()
    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    out.print(table)
    for line in notes:
        out.print(line, markup=False)
