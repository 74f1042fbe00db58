"""``celeriac dlq list|replay|purge``: inspect and act on a queue's dead letters."""

from __future__ import annotations

import click
from rich.table import Table

from ..broker.base import DeadLetter
from ..message import peek
from ._common import console, fail, format_time_ms, get_state
from ._options import app_options
from ._output import listing_options, note, output_mode, print_json, print_tsv

#: entries moved per script call by ``replay --all`` (one Lua call must stay short: it blocks Redis)
REPLAY_BATCH = 1000


@click.group()
def dlq() -> None:
    """Dead letters: messages delivered too often, undecodable, of unknown tasks, or failed for good."""


def task_name(entry: DeadLetter) -> str:
    """The task name read from the dead message, or a note saying it cannot be read (nothing is
    unpickled, no signature checked: a listing must never run code from Redis)."""
    found = peek(entry.data)
    return found[1] if found is not None else "(undecodable)"


@dlq.command("list")
@app_options
@click.argument("queue")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    show_envvar=True,
    help="Show at most this many entries, oldest first.",
)
@listing_options
@click.pass_context
def list_(ctx: click.Context, queue: str, limit: int, as_json: bool, as_table: bool) -> None:
    """List the dead letters of QUEUE, oldest first.

    On a terminal: a table. Piped or redirected: tab-separated lines (entry_id, task_id, task, reason,
    time), a header line first, every field in full. --json: JSON lines, one object per dead letter
    (entry_id, task_id, task, reason, time_ms, time, size_bytes).
    """
    mode = output_mode(as_json, as_table)
    broker = get_state(ctx).app().broker
    total = broker.stats(queue).dead
    entries = broker.dead_letters(queue, limit)
    if mode == "json":
        for e in entries:
            print_json(
                {
                    "entry_id": e.entry_id,
                    "task_id": e.task_id,
                    "task": task_name(e),
                    "reason": e.reason,
                    "time_ms": e.time_ms,
                    "time": format_time_ms(e.time_ms),
                    "size_bytes": len(e.data),
                }
            )
        return
    title = f"Dead letters of {queue!r} ({len(entries)} of {total})"
    if mode == "plain":
        note(title if entries else f"no dead letters in queue {queue!r}")
        rows = [
            (e.entry_id, e.task_id or "-", task_name(e), e.reason, format_time_ms(e.time_ms)) for e in entries
        ]
        print_tsv(("entry_id", "task_id", "task", "reason", "time"), rows)
        return
    out = console()
    if not entries:
        out.print(f"no dead letters in queue {queue!r}", markup=False)
        return
    table = Table(title=title, title_justify="left")
    table.add_column("entry id", no_wrap=True)
    table.add_column("task id", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("time", no_wrap=True)
    for e in entries:
        table.add_row(e.entry_id, e.task_id or "-", task_name(e), e.reason, format_time_ms(e.time_ms))
    out.print(table)


@dlq.command()
@app_options
@click.argument("queue")
@click.option(
    "--all",
    "all_",
    is_flag=True,
    envvar="CELERIAC_DLQ_REPLAY_ALL",
    show_envvar=True,
    help="Replay every dead letter.",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Replay the oldest N dead letters.",
)
@click.option(
    "--id",
    "entry_id",
    default=None,
    metavar="ENTRY",
    envvar="CELERIAC_DLQ_REPLAY_ID",
    show_envvar=True,
    help="Replay one entry.",
)
@click.pass_context
def replay(ctx: click.Context, queue: str, all_: bool, limit: int | None, entry_id: str | None) -> None:
    """Move dead letters of QUEUE back to the ready queue (give exactly one of --all, --limit, --id)."""
    if sum((all_, limit is not None, entry_id is not None)) != 1:
        raise click.UsageError("give exactly one of --all, --limit N or --id ENTRY")
    broker = get_state(ctx).app().broker
    if entry_id is not None:
        moved = broker.replay_dead(queue, 1, entry_id)
        if moved == 0:
            raise fail(f"no dead letter {entry_id!r} in queue {queue!r} (see `celeriac dlq list {queue}`)")
    elif limit is not None:
        moved = broker.replay_dead(queue, limit)
    else:
        # Bounded by the entries there at the start: letters dead-lettered meanwhile (a replayed
        # message that fails again) wait for the next replay. Each call takes the oldest entries, so
        # it consumes exactly its count of them, whether or not each held a message to move (an
        # entry without one is deleted, not counted as moved): count down by entries, not by moves.
        remaining = broker.stats(queue).dead
        moved = 0
        while remaining > 0:
            batch = min(REPLAY_BATCH, remaining)
            moved += broker.replay_dead(queue, batch)
            remaining -= batch
    console().print(f"replayed {moved} dead letter(s) of queue {queue!r}", markup=False)


@dlq.command("purge")
@app_options
@click.argument("queue")
@click.option("-y", "--yes", is_flag=True, show_envvar=True, help="Do not ask for confirmation.")
@click.pass_context
def purge_(ctx: click.Context, queue: str, yes: bool) -> None:
    """Delete every dead letter of QUEUE."""
    broker = get_state(ctx).app().broker
    total = broker.stats(queue).dead
    if total == 0:
        console().print(f"no dead letters in queue {queue!r}", markup=False)
        return
    if not yes:
        click.confirm(f"Delete {total} dead letter(s) of queue {queue!r}?", abort=True)
    n = broker.purge_dead(queue)
    console().print(f"deleted {n} dead letter(s) of queue {queue!r}", markup=False)
