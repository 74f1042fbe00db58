"""``celeriac purge``: delete the waiting (ready and delayed) messages of a queue."""

from __future__ import annotations

from typing import Any

import click

from ._common import console, get_state, split_names
from ._options import app_options


@click.command()
@app_options
@click.argument("queue", required=False)
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    metavar="Q1,Q2",
    help="Queues to purge (Celery's spelling; comma-separated, repeatable).",
)
@click.option(
    "-y", "--yes", "-f", "--force", is_flag=True, show_envvar=True, help="Do not ask for confirmation."
)
@click.pass_context
def purge(ctx: click.Context, queue: str | None, queues: tuple[str, ...], yes: bool) -> None:
    """Delete the ready and delayed messages of QUEUE (default: the app's task_default_queue, as
    `celery purge` does; or each queue of -Q).

    Running messages are left alone (their workers ack them as usual); dead letters are kept
    (see `celeriac dlq purge`).
    """
    app = get_state(ctx).app()
    names = ([queue] if queue else []) + split_names(queues)
    for name in names or [app.conf.task_default_queue]:
        _purge(app.broker, name, yes)


def _purge(broker: Any, queue: str, yes: bool) -> None:
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
