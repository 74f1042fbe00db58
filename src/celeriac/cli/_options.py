"""``-A/--app`` and ``--broker``, accepted both before and after the subcommand name.

``celeriac -A shop.tasks:app worker`` and ``celeriac worker -A shop.tasks:app`` mean the same. A value
typed on the command line wins over one read from the environment, wherever it was typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ._common import get_state

F = TypeVar("F", bound=Callable[..., Any])

APP_ENVVAR = "CELERIAC_APP"
BROKER_ENVVAR = "CELERIAC_BROKER_URL"

APP_HELP = "The app, as package.module:attribute (or package.module, which must define `app`)."
BROKER_HELP = "Broker URL (redis://host:6379/0). Typed here, it overrides the app's own broker."


def _typed(ctx: click.Context, param: click.Parameter) -> bool:
    return ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE


def _store_app(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    state = get_state(ctx)
    if _typed(ctx, param) or state.app_spec is None:
        state.app_spec = value


def _store_broker(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    state = get_state(ctx)
    typed = _typed(ctx, param)
    if typed or state.broker_url is None:
        state.broker_url = value
        state.broker_from_command_line = state.broker_from_command_line or typed


def app_options(func: F) -> F:
    """Add ``-A/--app`` and ``--broker`` to a command (values go to the shared :class:`State`)."""
    func = click.option(
        "--broker",
        "broker_url",
        envvar=BROKER_ENVVAR,
        show_envvar=True,
        metavar="URL",
        expose_value=False,
        is_eager=True,
        callback=_store_broker,
        help=BROKER_HELP,
    )(func)
    func = click.option(
        "-A",
        "--app",
        "app_spec",
        envvar=APP_ENVVAR,
        show_envvar=True,
        metavar="MODULE:APP",
        expose_value=False,
        is_eager=True,
        callback=_store_app,
        help=APP_HELP,
    )(func)
    return func
