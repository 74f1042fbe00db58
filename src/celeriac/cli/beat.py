"""``celeriac beat``: run a periodic scheduler, or list and change periodic entries.

``celeriac beat -A mod:app`` runs a scheduler (any number may run at once, and workers started with
``-B`` run one each). ``celeriac beat list | add | remove | pause | resume | run-now`` change what every
scheduler runs, through Redis (no database).
"""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from ..beat import Beat, EntryStatus
from ..exceptions import ConfigurationError
from ._common import console, fail, format_time_ms, get_state, json_option
from ._options import app_options
from ._output import listing_options, note, output_mode, print_json, print_tsv
from ._run_worker import configure_logging

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
JSON_HELP = "Print JSON (one document) instead of a table."
#: more entries than this are listed as tab-separated lines, as when piped
TABLE_MAX = 1000


@click.group(invoke_without_command=True)
@app_options
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    show_envvar=True,
    help="Logging level (to stderr) of the scheduler.",
)
@click.pass_context
def beat(ctx: click.Context, loglevel: str) -> None:
    """Run a periodic scheduler for the app's beat_schedule (no subcommand), or manage entries.

    \b
    celeriac beat -A shop.tasks:app              run a scheduler (as many as you like)
    celeriac beat list [--json]                  entries with their last and next run
    celeriac beat add NAME TASK '*/5 * * * *'    a dynamic entry (or a period in seconds)
    celeriac beat pause|resume|remove|run-now NAME
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..beat import Scheduler

    configure_logging(loglevel)
    scheduler = Scheduler(get_state(ctx).app(required=True))

    def _stop(signum: int, _frame: Any) -> None:
        scheduler.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    scheduler.run()


def _beat(ctx: click.Context) -> Beat:
    return Beat(get_state(ctx).app())


def _row(status: EntryStatus) -> dict[str, Any]:
    return status.as_dict()


@beat.command("list")
@app_options
@listing_options
@click.pass_context
def list_(ctx: click.Context, as_json: bool, as_table: bool) -> None:
    """List periodic entries (configured and dynamic) with their last and next run.

    On a terminal: a table (up to 1,000 entries; more are listed as lines). Piped or redirected:
    tab-separated lines (name, task, schedule, queue, source, state, last run, next run). --json: one
    JSON array of entries with their full definition, digest, paused/active, last_run_ms, next_run_ms.
    """
    mode = output_mode(as_json, as_table)
    entries = _beat(ctx).list()
    if mode == "json":
        print_json([_row(s) for s in entries])
        return
    if not entries:
        note("no periodic entries (start a scheduler with a beat_schedule, or `celeriac beat add`)")
        if mode != "plain":
            return
    columns = ("name", "task", "schedule", "queue", "source", "state", "last run", "next run")
    rows = [
        (
            s.entry.name,
            s.entry.task,
            s.entry.schedule.definition(),
            s.entry.queue,
            s.entry.source,
            "paused" if s.paused else ("active" if s.active else "waiting"),
            format_time_ms(s.last_run_ms or 0),
            format_time_ms(s.next_run_ms or 0),
        )
        for s in entries
    ]
    if mode == "plain" or len(rows) > TABLE_MAX:  # a table of 200k rows takes minutes to lay out
        print_tsv(columns, rows)
        return
    from rich.table import Table

    table = Table(title=f"Periodic entries ({len(entries)})", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def _schedule(name: str, text: str, tz: str | None) -> Any:
    from ..schedules import crontab

    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        try:
            return crontab.from_string(text, tz=tz)
        except ConfigurationError as exc:
            raise ConfigurationError(f"beat entry {name!r}", str(exc)) from None
    if tz is not None:
        raise click.BadParameter("--tz applies to cron schedules only", param_hint="--tz")
    return seconds


@beat.command()
@app_options
@click.argument("name")
@click.argument("task")
@click.argument("schedule")
@click.option("--args", "args_json", metavar="JSON", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Queue of the runs (default: the app's routing).")
@click.option(
    "--expires",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Drop a run not started within this many seconds of its slot.",
)
@click.option("--tz", default=None, help="Time zone of a cron schedule (default: the app's timezone).")
@click.option(
    "--catch-up",
    type=click.Choice(["once", "skip", "all"]),
    default="once",
    show_default=True,
    help="After downtime: run the latest missed slot once, none, or each (with --grace).",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds after its slot a missed run may still start.",
)
@click.option("--replace", is_flag=True, help="Replace a dynamic entry of that name.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    task: str,
    schedule: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    expires: float | None,
    tz: str | None,
    catch_up: str,
    grace_s: float | None,
    replace: bool,
    as_json: bool,
) -> None:
    """Add a dynamic entry NAME running TASK on SCHEDULE: seconds (``30``) or a cron line in quotes
    (``'0 9 * * mon-fri'``: minute hour day-of-month month day-of-week)."""
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if expires is not None:
        options["expires"] = expires
    entry = _beat(ctx).add(
        name,
        task,
        _schedule(name, schedule, tz),
        args=json_option(args_json, list, "--args"),
        kwargs=json_option(kwargs_json, dict, "--kwargs"),
        options=options,
        catch_up=catch_up,
        grace_s=grace_s,
        replace=replace,
    )
    if as_json:
        click.echo(json.dumps({**entry.definition(), "digest": entry.digest}, default=repr))
    else:
        console().print(
            f"added {name!r}: {task} {entry.schedule.definition()} -> queue {entry.queue}", markup=False
        )


def _named(action: str, past: str, unchanged: str) -> click.Command:
    @click.command(action)
    @app_options
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        b = _beat(ctx)
        changed = True
        if action == "remove":
            b.remove(name)
        else:
            changed = getattr(b, action)(name)
        if as_json:
            click.echo(json.dumps({"name": name, "action": action, "changed": changed}))
        else:
            console().print(f"{name!r} {past if changed else unchanged}", markup=False)

    command.help = {
        "remove": "Remove entry NAME: it never runs again (a configured entry returns when a scheduler "
        "with it in its beat_schedule starts).",
        "pause": "Pause entry NAME (its run enqueued ahead is withdrawn).",
        "resume": "Resume entry NAME from its next slot (slots missed while paused are not caught up).",
    }[action]
    return command


beat.add_command(_named("remove", "removed", "removed"))
beat.add_command(_named("pause", "paused", "was paused already"))
beat.add_command(_named("resume", "resumed", "was not paused"))


@beat.command("run-now")
@app_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def run_now(ctx: click.Context, name: str, as_json: bool) -> None:
    """Send entry NAME's task now, once (its schedule is not affected)."""
    try:
        result = _beat(ctx).run_now(name)
    except ConfigurationError as exc:
        raise fail(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"name": name, "task_id": result.id}))
    else:
        console().print(f"sent {name!r}: task id {result.id}", markup=False)


__all__ = ["beat"]
