"""``celeriac control revoke | shutdown``: Celery's ``celery control`` spellings."""

from __future__ import annotations

import click

from ._common import get_state, split_names
from ._options import app_options
from ._output import note, print_json
from .revoke import revoke


@click.group()
def control() -> None:
    """Worker and task control, as `celery control`: revoke, shutdown.

    \b
    celeriac control revoke TASK_ID...
    celeriac control shutdown                       # every live worker
    celeriac control shutdown -d worker1@host       # only these
    """


control.add_command(revoke)


@control.command()
@app_options
@click.option(
    "-d",
    "--destination",
    multiple=True,
    metavar="WORKER[,WORKER]",
    show_envvar=True,
    help="Only these workers (worker@host names; comma-separated, repeatable). Default: every live worker.",
)
@click.option(
    "-t",
    "--timeout",
    type=float,
    default=1.0,
    help="Accepted for Celery's command lines (nothing to wait for).",
)
@click.option("-j", "--json", "as_json", is_flag=True, help='Print {"shutdown": [worker, ...]}.')
@click.pass_context
def shutdown(ctx: click.Context, destination: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Warm shutdown of live workers, as SIGTERM: each stops fetching, lets its running tasks finish
    (within worker_shutdown_grace_s), records their outcomes and exits 0.

    Sent through Redis (the stream every worker follows): each worker acts within a fraction of a
    second. A destination that names no live worker is an error and nothing is sent. Prints the
    workers it was sent to, one per line.
    """
    app = get_state(ctx).app()
    try:
        sent = app.control.shutdown(split_names(destination) or None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"shutdown": sent})
        return
    if not sent:
        note("no live workers: nothing to shut down")
        return
    note(f"warm shutdown sent to {len(sent)} worker(s):")
    for name in sent:
        click.echo(name)
