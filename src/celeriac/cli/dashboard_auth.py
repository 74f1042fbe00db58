"""The sign-in options of ``celeriac dashboard`` and ``celeriac dashboard-password``.

Secrets are best given through the environment (``CELERIAC_DASHBOARD_TOKEN``,
``CELERIAC_DASHBOARD_OIDC_CLIENT_SECRET``, ``CELERIAC_DASHBOARD_SECRET_KEY``): a command line is visible
to every user of the machine in ``ps``. Several values go space-separated in one variable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..dashboard.auth import AuthSettings

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--token",),
        {
            "multiple": True,
            "metavar": "TOKEN",
            "help": "Bearer token with the admin role (>= 16 characters).",
        },
    ),
    (("--read-token",), {"multiple": True, "metavar": "TOKEN", "help": "Bearer token with the read role."}),
    (
        ("--basic-auth",),
        {
            "multiple": True,
            "metavar": "USER:HASH",
            "help": "HTTP basic auth user with a password hash from `celeriac dashboard-password`.",
        },
    ),
    (("--oidc-issuer",), {"metavar": "URL", "help": "Sign in with this OpenID Connect issuer."}),
    (("--oidc-client-id",), {"metavar": "ID", "help": "OAuth client id (OIDC or GitHub)."}),
    (("--oidc-client-secret",), {"metavar": "SECRET", "help": "OAuth client secret (OIDC or GitHub)."}),
    (("--github",), {"is_flag": True, "help": "Sign in with GitHub (client id/secret as for OIDC)."}),
    (
        ("--github-url",),
        {"default": "https://github.com", "show_default": True, "help": "GitHub (Enterprise) web URL."},
    ),
    (
        ("--github-api-url",),
        {"default": "https://api.github.com", "show_default": True, "help": "GitHub (Enterprise) API URL."},
    ),
    (
        ("--trusted-header",),
        {"metavar": "NAME", "help": "Header a reverse proxy sets to the signed-in user (X-Forwarded-Email)."},
    ),
    (
        ("--trusted-proxy",),
        {
            "multiple": True,
            "metavar": "ADDRESS",
            "help": "Address or network whose --trusted-header is believed (default: loopback).",
        },
    ),
    (
        ("--allow-user",),
        {"multiple": True, "metavar": "NAME", "help": "User name or e-mail let in (repeatable)."},
    ),
    (("--allow-domain",), {"multiple": True, "metavar": "DOMAIN", "help": "Verified e-mail domain let in."}),
    (
        ("--allow-org",),
        {"multiple": True, "metavar": "ORG", "help": "GitHub organisation whose members are let in."},
    ),
    (
        ("--admin",),
        {
            "multiple": True,
            "metavar": "WHO",
            "help": "Admin (may replay, purge, revoke): a user, e-mail, @domain or org:NAME. "
            "Default: everyone let in.",
        },
    ),
    (
        ("--read-only",),
        {"is_flag": True, "help": "Nobody may act: replay, purge, revoke and retry are refused."},
    ),
    (("--secret-key",), {"metavar": "KEY", "help": "Signs session cookies; set it for several replicas."}),
    (
        ("--insecure-cookies",),
        {
            "is_flag": True,
            "help": "Send the session cookie over plain http too (not only https and loopback).",
        },
    ),
    (("--metrics-public",), {"is_flag": True, "help": "Serve /metrics without auth."}),
]


def auth_options(func: F) -> F:
    """Add the sign-in options to a command (they arrive as keyword arguments)."""
    for decls, attrs in reversed(_OPTIONS):
        func = click.option(*decls, show_envvar=True, **attrs)(func)
    return func


def settings_from_options(options: dict[str, Any]) -> AuthSettings:
    """The :class:`AuthSettings` of the options :func:`auth_options` added (popped from ``options``)."""
    from ..dashboard.auth import AuthSettings, OIDCSettings, parse_basic_users

    names = [decls[0].lstrip("-").replace("-", "_") for decls, _ in _OPTIONS]
    o = {name: options.pop(name) for name in names}

    def words(values: tuple[str, ...]) -> tuple[str, ...]:  # "a b" from an environment variable: two
        return tuple(w for v in values for w in v.split())

    oidc = None
    if o["oidc_issuer"] or o["github"] or o["oidc_client_id"]:
        oidc = OIDCSettings(
            client_id=o["oidc_client_id"] or "",
            client_secret=o["oidc_client_secret"] or "",
            issuer=o["oidc_issuer"] or "",
            provider="github" if o["github"] else "oidc",
            github_url=o["github_url"],
            github_api_url=o["github_api_url"],
        )
    extra: dict[str, Any] = {}
    if o["trusted_proxy"]:
        extra["trusted_proxies"] = words(o["trusted_proxy"])
    return AuthSettings(
        tokens=words(o["token"]),
        read_tokens=words(o["read_token"]),
        basic_users=parse_basic_users(words(o["basic_auth"])),
        oidc=oidc,
        trusted_header=o["trusted_header"] or "",
        allow_users=frozenset(words(o["allow_user"])),
        allow_domains=frozenset(words(o["allow_domain"])),
        allow_orgs=frozenset(words(o["allow_org"])),
        admins=frozenset(words(o["admin"])),
        read_only=o["read_only"],
        secret_key=o["secret_key"] or "",
        secure_cookies=not o["insecure_cookies"],
        metrics_public=o["metrics_public"],
        **extra,
    ).validate()


@click.command("dashboard-password")
@click.option("--user", default="admin", show_default=True, help="The user name to print with the hash.")
@click.password_option("--password", help="The password (asked twice when not given).")
def dashboard_password(user: str, password: str) -> None:
    """Print a USER:HASH line for `celeriac dashboard --basic-auth` (a salted scrypt hash).

    \b
    celeriac dashboard-password --user alice
    celeriac dashboard --address 0.0.0.0 --basic-auth 'alice:scrypt$16384$...'
    """
    from ..dashboard.auth import hash_password

    click.echo(f"{user}:{hash_password(password)}")


__all__ = ["auth_options", "dashboard_password", "settings_from_options"]
