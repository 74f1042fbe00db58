"""``celeriac status``: queue counts and live workers, as tables."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from .._urls import redact
from ._common import console, format_age_s, get_state
from ._options import app_options
from .worker import split_queues

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
@click.pass_context
def status(ctx: click.Context, queues: tuple[str, ...]) -> None:
    """Show ready, delayed, running and dead-letter counts per queue, and the live workers."""
    app = get_state(ctx).app()
    broker = app.broker
    names = list(dict.fromkeys([*broker.known_queues(), app.conf.task_default_queue, *split_queues(queues)]))
    out = console()
    out.print(f"broker: {redact(app.conf.broker_url)}", markup=False)

    paused = _paused(app)
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for column in ("ready", "delayed", "running", "dead letters"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for name in names:
        s = broker.stats(name)
        state = "paused" if name in paused else "active"
        table.add_row(name, str(s.ready), str(s.delayed), str(s.running), str(s.dead), state)
    out.print(table)

    workers = broker.workers()
    if not workers:
        out.print("no live workers")
        return
    now = time.time()
    wtable = Table(title=f"Workers ({len(workers)} live)", title_justify="left")
    wtable.add_column("worker", no_wrap=True)
    for column in ("queues", "pool/slots", "running", "processed", "failed", "up", "version"):
        wtable.add_column(
            column, justify="left" if column in ("queues", "pool/slots", "version") else "right"
        )
    for w in sorted(workers, key=lambda w: w.worker_id):
        f = w.fields
        started = _float(f.get("started_at"))
        wtable.add_row(
            w.worker_id,
            f.get("queues", ""),
            f"{f.get('pool', '?')}/{f.get('concurrency', '?')}",
            f.get("running", ""),
            f.get("processed", ""),
            f.get("failed", ""),
            format_age_s(now - started) if started else "-",
            f.get("version", ""),
        )
    out.print(wtable)


def _paused(app: Celeriac) -> set[str]:
    """Paused queues (``celeriac queue pause``); none without Redis."""
    from ..broker.redis import RedisBroker

    if not isinstance(app.broker, RedisBroker):
        return set()
    from ..flow import FlowAdmin

    return FlowAdmin(app).paused_queues()


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
