"""``celeriac queue pause|resume NAME``: stop and restart consumption of a queue on every worker."""

from __future__ import annotations

import json

import click

from ._common import console, get_state
from ._options import app_options


@click.group()
def queue() -> None:
    """Pause or resume queues (sends are still accepted; workers take nothing from a paused queue)."""


def _command(action: str) -> click.Command:
    @click.command(action)
    @app_options
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a sentence.")
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        from ..flow import FlowAdmin

        admin = FlowAdmin(get_state(ctx).app())
        changed = admin.pause_queue(name) if action == "pause" else admin.resume_queue(name)
        if as_json:
            click.echo(json.dumps({"queue": name, "action": action, "changed": changed}))
        elif action == "pause":
            state = "paused" if changed else "was paused already"
            console().print(
                f"queue {name!r} {state}: workers take nothing from it (within seconds); "
                "sends are still accepted",
                markup=False,
            )
        else:
            console().print(f"queue {name!r} {'resumed' if changed else 'was not paused'}", markup=False)

    command.help = {
        "pause": "Pause queue NAME on every worker (sends are still accepted).",
        "resume": "Resume queue NAME.",
    }[action]
    return command


queue.add_command(_command("pause"))
queue.add_command(_command("resume"))

__all__ = ["queue"]
