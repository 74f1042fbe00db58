"""What every subcommand shares: the app or broker to talk to, error reporting, console output."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from .._urls import redact
from ..app import Celeriac
from ._loader import AppLoadError, load_app
from ._run_worker import error_line

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class State:
    """The group's options, resolved lazily: loading an app imports user code, so only commands that
    need it pay for it.

    Attributes:
        app_spec: ``-A`` value (``module:app``), or None.
        broker_url: ``--broker`` value, or None.
        broker_from_command_line: ``--broker`` was typed (not read from ``CELERIAC_BROKER_URL``); it then
            overrides the app's own broker. From the environment it does not: the app already read
            the environment, and an explicit ``broker=`` in the app's code wins, as everywhere else.
    """

    app_spec: str | None = None
    broker_url: str | None = None
    broker_from_command_line: bool = False
    _app: Celeriac | None = field(default=None, repr=False)

    def app(self, *, required: bool = False) -> Celeriac:
        """The ``-A`` app, or (when not ``required``) a bare app that only knows the broker URL.

        Raises:
            click.UsageError: ``required`` and no ``-A``/``CELERIAC_APP`` was given, or the app cannot be
                loaded.
            ConfigurationError: ``--broker`` is not a valid URL.
        """
        if self._app is not None:
            return self._app
        if self.app_spec:
            try:
                app = load_app(self.app_spec)
            except AppLoadError as exc:
                raise click.UsageError(str(exc)) from None
            if self.broker_url and self.broker_from_command_line:
                app.conf.broker_url = self.broker_url
        elif required:
            raise click.UsageError(
                "this command needs an app: pass -A package.module:app (or set CELERIAC_APP)"
            )
        else:
            app = Celeriac(broker=self.broker_url) if self.broker_url else Celeriac()
        self._app = app
        return app

    def close(self) -> None:
        """Close the producer-side connections of the app, if one was made."""
        if self._app is not None:
            self._app.close()


def get_state(ctx: click.Context) -> State:
    """The :class:`State` the group stored on the context."""
    state = ctx.find_object(State)
    if state is None:  # a subcommand invoked on its own (tests): no group options
        state = ctx.ensure_object(State)
    return state


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr). Created per call, so CliRunner's capture works."""
    from rich.console import Console  # not imported by `celeriac worker`

    return Console(stderr=stderr, highlight=False)


def fail(message: str) -> click.ClickException:
    """A one-line error for the user (printed as ``Error: ...``, exit status 1), URLs redacted."""
    return click.ClickException(redact(message))


def json_option(value: str | None, kind: type, what: str) -> Any:
    """Parse a JSON command-line value that must be a ``kind`` (``list`` or ``dict``)."""
    if value is None or value == "":
        return kind()
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}): {value!r}", param_hint=what) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(
            f"must be a JSON {'array' if kind is list else 'object'}, got {value!r}", param_hint=what
        )
    return parsed


def format_time_ms(time_ms: int) -> str:
    """Epoch milliseconds as local ``YYYY-MM-DD HH:MM:SS``."""
    if time_ms <= 0:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time_ms / 1000))
    except (OverflowError, OSError, ValueError):  # a time no clock can show (a forged dead letter)
        return str(time_ms)


def format_age_s(seconds: float) -> str:
    """A short human duration: ``42s``, ``5m12s``, ``3h04m``, ``2d05h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


__all__ = [
    "State",
    "console",
    "error_line",
    "fail",
    "format_age_s",
    "format_time_ms",
    "get_state",
    "json_option",
    "split_names",
]


def split_names(values: tuple[str, ...]) -> list[str]:
    """``-Q a,b -Q c`` -> ``["a", "b", "c"]`` (order kept: for queues it is the consumption priority)."""
    out: list[str] = []
    for value in values:
        out += [q.strip() for q in value.split(",") if q.strip()]
    return list(dict.fromkeys(out))
