"""``celeriac dashboard``: serve the dashboard (pages, JSON API, /metrics) with uvicorn."""

from __future__ import annotations

from typing import Any

import click

from ._common import get_state
from ._options import app_options
from .dashboard_auth import auth_options, settings_from_options


@click.command()
@app_options
@click.option("--address", default="127.0.0.1", show_default=True, show_envvar=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True, show_envvar=True)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    show_envvar=True,
    help="A queue to show even when no worker consumes it (repeatable).",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    show_envvar=True,
    metavar="SECONDS",
    help="How often pages refresh their live part (0: never).",
)
@auth_options
@click.pass_context
def dashboard(
    ctx: click.Context, /, address: str, port: int, queues: tuple[str, ...], refresh: float, **auth: Any
) -> None:
    """Serve the dashboard: queues, workers, task outcomes, failures, dead letters, /metrics.

    Without authentication it binds to loopback only. Sign-in: --token, --basic-auth, --oidc-issuer,
    --github or --trusted-header (see docs/dashboard-auth.md). Needs celeriac[dashboard].
    """
    try:
        import uvicorn

        from ..dashboard import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'celeriac[dashboard]' ({exc.name} is missing)"
        ) from None
    from ..dashboard.auth import check_bind_address
    from ..dashboard.security import AuthPolicy
    from ..exceptions import ConfigurationError

    settings = settings_from_options(auth)
    try:
        check_bind_address(address, settings)  # loopback only, unless some sign-in is configured
    except ConfigurationError as exc:
        raise click.UsageError(str(exc).removeprefix("invalid setting '--address': ")) from None
    policy = AuthPolicy(settings)
    app = get_state(ctx).app(required=True)
    asgi = create_app(app, policy=policy, queues=list(queues), refresh_s=refresh)
    click.echo(f"celeriac dashboard on http://{address}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(asgi, host=address, port=port, log_level="warning", access_log=False)
