"""The ``celeriac`` command: a click group; each subcommand lives in its own module.

Subcommands only parse arguments and call the library (``Worker``, ``send_task``, the broker's admin
methods). Errors from celeriac's exception tree become one ``Error: ...`` line and exit status 1,
never a traceback; URLs in any output have their passwords redacted.

Every option can also be set through the environment: ``-A`` as ``CELERIAC_APP``, ``--broker`` as
``CELERIAC_BROKER_URL``, and the others as ``CELERIAC_<COMMAND>_<OPTION>`` (``CELERIAC_WORKER_QUEUES``,
``CELERIAC_DLQ_LIST_LIMIT``); ``--help`` shows each name.
"""

from __future__ import annotations

from typing import Any

import click
import redis

from .._version import __version__
from ..exceptions import CeleriacError
from ._common import State, error_line
from ._options import app_options


class CeleriacGroup(click.Group):
    """A group that turns celeriac (and Redis client) errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CeleriacError, redis.RedisError) as exc:
            raise click.ClickException(error_line(exc)) from None


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
    """
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


def _register() -> None:
    from .call import call
    from .dlq import dlq
    from .purge import purge
    from .status import status
    from .worker import worker

    for command in (worker, call, status, dlq, purge):
        main.add_command(command)


_register()

__all__ = ["main"]
