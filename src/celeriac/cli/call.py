"""``celeriac call``: send one task by name, optionally wait for its result."""

from __future__ import annotations

import json
from typing import Any

import click

from ..exceptions import NotRegistered, ResultsDisabled, ResultTimeout
from ._common import console, fail, get_state, json_option
from ._options import app_options


@click.command()
@app_options
@click.argument("name")
@click.option(
    "--args",
    "args_json",
    metavar="JSON",
    envvar="CELERIAC_CALL_ARGS",
    show_envvar=True,
    help="Positional arguments, a JSON array.",
)
@click.option(
    "--kwargs",
    "kwargs_json",
    metavar="JSON",
    envvar="CELERIAC_CALL_KWARGS",
    show_envvar=True,
    help="Keyword arguments, a JSON object.",
)
@click.option(
    "--countdown",
    type=click.FloatRange(min=0),
    default=None,
    show_envvar=True,
    help="Run no earlier than this many seconds from now.",
)
@click.option(
    "--expires",
    type=click.FloatRange(min=0),
    default=None,
    show_envvar=True,
    help="Discard the task if no worker started it within this many seconds.",
)
@click.option("-Q", "--queue", default=None, show_envvar=True, help="Send to this queue (default: routing).")
@click.option("--task-id", default=None, show_envvar=True, help="Use this task id instead of a new UUID.")
@click.option(
    "--wait/--no-wait",
    default=False,
    show_envvar=True,
    help="Wait for the task to finish and print its result (asks the worker to store it).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    show_envvar=True,
    help="With --wait: give up after this many seconds.",
)
@click.pass_context
def call(
    ctx: click.Context,
    name: str,
    args_json: str | None,
    kwargs_json: str | None,
    countdown: float | None,
    expires: float | None,
    queue: str | None,
    task_id: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send the task NAME (e.g. shop.tasks.add) and print its id.

    Without -A the task is sent by name and the worker applies the task's declared options; with -A
    the arguments are checked against the task's signature first.
    """
    args = json_option(args_json, list, "'--args'")
    kwargs = json_option(kwargs_json, dict, "'--kwargs'")
    app = get_state(ctx).app()
    options: dict[str, Any] = {"countdown": countdown, "expires": expires, "queue": queue, "task_id": task_id}
    if wait:
        options["ignore_result"] = False
    options = {k: v for k, v in options.items() if v is not None}
    task = app.tasks.get(name)
    try:
        if task is not None:
            result = task.apply_async(args, kwargs, **options)
        else:
            result = app.send_task(name, args, kwargs, **options)
    except TypeError as exc:  # arguments that do not fit the task's signature
        raise fail(f"not sent: {exc}") from None
    if not wait:
        click.echo(result.id)
        return
    try:
        value = result.get(timeout=timeout)
    except (ResultTimeout, ResultsDisabled):
        raise
    except Exception as exc:  # the task's own exception (or TaskError), rebuilt from the stored error
        remote = getattr(exc, "remote_traceback", None)
        if remote:
            console(stderr=True).print(remote.rstrip(), markup=False, style="dim")
        hint = ""
        if isinstance(exc, NotRegistered):
            hint = " (dead-lettered: `celeriac dlq list QUEUE` shows the worker's reason)"
        raise fail(f"task {result.id} failed: {type(exc).__name__}: {exc}{hint}") from None
    click.echo(_show(value))


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
