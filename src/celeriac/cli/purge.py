"""``celeriac purge``: delete the waiting (ready and delayed) messages of a queue."""

from __future__ import annotations

import click

from ._common import console, get_state
from ._options import app_options


@click.command()
@app_options
@click.argument("queue")
@click.option("-y", "--yes", is_flag=True, show_envvar=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, queue: str, yes: bool) -> None:
    """Delete the ready and delayed messages of QUEUE.

    Running messages are left alone (their workers ack them as usual); dead letters are kept
    (see `celeriac dlq purge`).
    """
    broker = get_state(ctx).app().broker
    stats = broker.stats(queue)
    waiting = stats.ready + stats.delayed
    if waiting == 0:
        console().print(f"queue {queue!r} has no waiting messages", markup=False)
        return
    if not yes:
        click.confirm(
            f"Delete {waiting} waiting message(s) of queue {queue!r} "
            f"({stats.ready} ready, {stats.delayed} delayed)?",
            abort=True,
        )
    n = broker.purge(queue)
    console().print(f"purged {n} message(s) from queue {queue!r}", markup=False)
