"""``celeriac revoke``: revoke tasks by id (``app.control.revoke``)."""

from __future__ import annotations

import sys

import click

from ..control import signal_name
from ._common import console, fail, get_state
from ._options import app_options
from ._output import note, print_json


@click.command()
@app_options
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@click.option(
    "-t",
    "--terminate",
    is_flag=True,
    show_envvar=True,
    help="Also stop the tasks that are running (asyncio: cancelled; processes: the signal goes to the "
    "child running it; gevent: greenlet killed; threads: see docs/task-control.md).",
)
@click.option(
    "-s",
    "--signal",
    "signal",
    default="SIGTERM",
    show_default=True,
    show_envvar=True,
    help="Signal for --terminate in the process pool (name such as TERM, SIGKILL, or number).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_envvar=True,
    help='Print one JSON object: {"revoked": [ids], "terminate": bool, "signal": name}.',
)
@click.pass_context
def revoke(
    ctx: click.Context, task_ids: tuple[str, ...], terminate: bool, signal: str, as_json: bool
) -> None:
    """Revoke TASK_ID...: tasks not started yet never run (their state becomes REVOKED), on every
    worker, including workers started later (for `revoke_expires_s`, a day by default).

    \b
    celeriac revoke 5f0c...e1
    celeriac revoke --terminate --signal KILL 5f0c...e1 9a1b...07
    """
    try:
        name = signal_name(int(signal) if signal.isdigit() else signal)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--signal'") from None
    ids = list(dict.fromkeys(t.strip() for t in task_ids if t.strip()))
    if not ids:
        raise fail("no task id given")
    get_state(ctx).app().control.revoke(ids, terminate=terminate, signal=name)
    if as_json:
        print_json({"revoked": ids, "terminate": terminate, "signal": name})
        return
    what = f"revoked {len(ids)} task(s)" + (f" (terminate with {name})" if terminate else "")
    if sys.stdout.isatty():
        console().print(what, markup=False)
    else:
        note(what)  # piped: stdout holds only the ids, one per line
    for task_id in ids:
        click.echo(task_id)
