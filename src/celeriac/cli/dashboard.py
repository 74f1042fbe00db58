"""``celeriac dashboard``: serve the dashboard (pages, JSON API, /metrics) with uvicorn."""

from __future__ import annotations

import ipaddress

import click

from ._common import get_state


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@click.command()
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
@click.pass_context
def dashboard(ctx: click.Context, address: str, port: int, queues: tuple[str, ...], refresh: float) -> None:
    """Serve the dashboard: queues, workers, task outcomes, failures, dead letters, /metrics.

    Without authentication it binds to loopback only. Needs celeriac[dashboard].
    """
    try:
        import uvicorn

        from ..dashboard import OpenPolicy, create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'celeriac[dashboard]' ({exc.name} is missing)"
        ) from None
    policy = OpenPolicy()
    if not _loopback(address) and not policy.authenticates:
        raise click.UsageError(
            f"refusing to serve the dashboard on {address} without authentication: bind to 127.0.0.1 "
            "(and put an authenticating proxy in front), or configure authentication"
        )
    app = get_state(ctx).app(required=True)
    asgi = create_app(app, policy=policy, queues=list(queues), refresh_s=refresh)
    click.echo(f"celeriac dashboard on http://{address}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(asgi, host=address, port=port, log_level="warning", access_log=False)
