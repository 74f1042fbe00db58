"""The ``celeriac`` command: a click group; each subcommand lives in its own module, imported only
when that subcommand runs (a worker does not import the tables of ``status``, nor ``rich``).

Subcommands only parse arguments and call the library (``Worker``, ``send_task``, the broker's admin
methods). Errors from celeriac's exception tree become one ``Error: ...`` line and exit status 1,
never a traceback; URLs in any output have their passwords redacted.

Every option can also be set through the environment: ``-A`` as ``CELERIAC_APP``, ``--broker`` as
``CELERIAC_BROKER_URL``, and the others as ``CELERIAC_<COMMAND>_<OPTION>`` (``CELERIAC_WORKER_QUEUES``,
``CELERIAC_DLQ_LIST_LIMIT``); ``--help`` shows each name.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._version import __version__
from ..exceptions import CeleriacError
from ._common import State, error_line
from ._options import app_options

#: subcommand -> module defining it (imported on first use)
COMMANDS = {
    "worker": "worker",
    "call": "call",
    "status": "status",
    "dlq": "dlq",
    "purge": "purge",
    "events": "events",
    "beat": "beat",
    "queue": "queue",
    "revoke": "revoke",
    "control": "control",
    "inspect": "inspect_cmd",
    "check-celery": "check_celery",
    "dashboard": "dashboard",
    "dashboard-password": "dashboard_auth",
}


class CeleriacGroup(click.Group):
    """A group that turns celeriac (and Redis client) errors into one clear line and exit status 1,
    and imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(f"{__package__}.{module}"), cmd_name.replace("-", "_"))
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CeleriacError as exc:
            raise click.ClickException(error_line(exc)) from None
        except Exception as exc:
            if _is_redis_error(exc):
                raise click.ClickException(error_line(exc)) from None
            raise


def _is_redis_error(exc: Exception) -> bool:
    # imported only when an error happened: the worker should not import the client for this check
    import sys

    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, redis.RedisError)


CONTEXT_SETTINGS: dict[str, Any] = {
    "auto_envvar_prefix": "CELERIAC",
    "help_option_names": ["-h", "--help"],
    "max_content_width": 110,
}


@click.group(cls=CeleriacGroup, context_settings=CONTEXT_SETTINGS)
@app_options
@click.version_option(__version__, "--version", prog_name="celeriac")
@click.pass_context
def main(ctx: click.Context) -> None:
    """celeriac: a lean, at-least-once task queue on Redis with a Celery-shaped API.

    \b
    celeriac worker -A shop.tasks:app -Q default,io -c 200
    celeriac call shop.tasks.add --args '[1, 2]' --wait
    celeriac status
    celeriac dlq list default
    celeriac beat list
    """
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


__all__ = ["main"]
