"""``celeriac status``: queue counts and live workers, as tables."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from .._urls import redact
from ..broker.base import WorkerInfo
from ._common import console, format_age_s, get_state, split_names
from ._options import app_options
from ._output import listing_options, note, output_mode, print_json, print_tsv

if TYPE_CHECKING:
    from ..app import Celeriac


@click.command()
@app_options
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    metavar="Q1,Q2",
    show_envvar=True,
    help="Also show these queues (comma-separated, repeatable). Always shown: the queues live workers "
    "consumed recently and the app's default queue.",
)
@listing_options
@click.pass_context
def status(ctx: click.Context, queues: tuple[str, ...], as_json: bool, as_table: bool) -> None:
    """Show ready, delayed, running and dead-letter counts per queue, and the live workers.

    On a terminal: two tables. Piped or redirected: tab-separated lines, every field in full: a header
    line and one line per queue (queue, ready, delayed, running, dead), an empty line, then a header
    line and one line per live worker (the broker line and notes go to stderr). --json: one JSON
    document {"broker": URL, "queues": [{queue, ready, delayed, running, dead, paused}, ...],
    "workers": [{worker, hostname, pid, queues, pool, concurrency, ...}, ...]}. A queue paused with
    `celeriac queue pause` shows state "paused" (JSON: "paused": true).
    """
    mode = output_mode(as_json, as_table)
    app = get_state(ctx).app()
    broker = app.broker
    names = list(dict.fromkeys([*broker.known_queues(), app.conf.task_default_queue, *split_names(queues)]))
    stats = [broker.stats(name) for name in names]
    workers = sorted(broker.workers(), key=lambda w: w.worker_id)
    paused = _paused(app)
    broker_url = redact(app.conf.broker_url)
    now = time.time()
    if mode == "json":
        print_json(
            {
                "broker": broker_url,
                "queues": [
                    {
                        "queue": s.name,
                        "ready": s.ready,
                        "delayed": s.delayed,
                        "running": s.running,
                        "dead": s.dead,
                        "paused": s.name in paused,
                    }
                    for s in stats
                ],
                "workers": [{"worker": w.worker_id, **w.fields} for w in workers],
            }
        )
        return
    if mode == "plain":
        note(f"broker: {broker_url}")
        print_tsv(
            ("queue", "ready", "delayed", "running", "dead", "state"),
            [(s.name, s.ready, s.delayed, s.running, s.dead, _state(s.name, paused)) for s in stats],
        )
        click.echo("")
        if not workers:
            note("no live workers")
        print_tsv(WORKER_COLUMNS, [_worker_row(w, now) for w in workers])
        return

    out = console()
    out.print(f"broker: {broker_url}", markup=False)
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for column in ("ready", "delayed", "running", "dead letters"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for s in stats:
        table.add_row(
            s.name, str(s.ready), str(s.delayed), str(s.running), str(s.dead), _state(s.name, paused)
        )
    out.print(table)
    if not workers:
        out.print("no live workers")
        return
    wtable = Table(title=f"Workers ({len(workers)} live)", title_justify="left")
    for column in WORKER_COLUMNS:
        wtable.add_column(
            column,
            justify="left" if column in ("worker", "queues", "pool/slots", "version") else "right",
            no_wrap=column == "worker",
        )
    for w in workers:
        wtable.add_row(*_worker_row(w, now))
    out.print(wtable)


def _state(queue: str, paused: set[str]) -> str:
    return "paused" if queue in paused else "active"


def _paused(app: Celeriac) -> set[str]:
    """Paused queues (``celeriac queue pause``); none without Redis."""
    from ..broker.redis import RedisBroker

    if not isinstance(app.broker, RedisBroker):
        return set()
    from ..flow import FlowAdmin

    return FlowAdmin(app).paused_queues()


WORKER_COLUMNS = (
    "worker",
    "queues",
    "pool/slots",
    "running",
    "processed",
    "failed",
    "redis conns",
    "up",
    "version",
)


def _worker_row(w: WorkerInfo, now: float) -> tuple[str, ...]:
    f = w.fields
    started = _float(f.get("started_at"))
    return (
        w.worker_id,
        f.get("queues", ""),
        f"{f.get('pool', '?')}/{f.get('concurrency', '?')}",
        f.get("running", ""),
        f.get("processed", ""),
        f.get("failed", ""),
        f.get("connections", "-"),
        format_age_s(now - started) if started else "-",
        f.get("version", ""),
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
