"""Who may see the dashboard and who may act: the hook that authentication plugs into.

:func:`celeriac.dashboard.create_app` takes a :class:`Policy`. The app asks it, for every request,
for the caller's role (``"admin"``, ``"read"``, or None: not signed in), and before every action
(a POST: revoke, retry, replay, purge) to check the request (CSRF). A policy may add middleware
(sessions, security headers) and routes (login, logout, an OIDC callback).

:class:`OpenPolicy`, the default, lets everyone in as admin. It is for a dashboard bound to loopback
(``celeriac dashboard`` refuses another address without a policy that authenticates); it still
refuses actions from another site (``Sec-Fetch-Site`` / ``Origin``), so a web page the operator
visits cannot post to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute

Role = Literal["admin", "read"]


class Policy:
    """Base policy: override what you need (see the module docstring)."""

    #: whether this policy authenticates callers (``celeriac dashboard`` then allows a non-loopback bind)
    authenticates: bool = False

    def middleware(self) -> Sequence[Middleware]:
        """Middleware wrapped around the whole app, outermost first."""
        return ()

    def routes(self) -> Sequence[BaseRoute]:
        """Extra routes (login, logout, callbacks), mounted before the dashboard's own."""
        return ()

    def role(self, request: Request) -> Role | None:
        """The caller's role, or None when not signed in (the app answers 401 or redirects)."""
        return "admin"

    def login_url(self, request: Request) -> str | None:
        """Where an HTML request without a role is sent (None: answer 401)."""
        return None

    def check_action(self, request: Request) -> None:
        """Raise ``HTTPException(403)`` unless this POST may act (CSRF). The default refuses requests
        the browser marks as coming from another site."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, "cross-site request refused")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            expected = f"{request.url.scheme}://{request.url.netloc}"
            if origin != expected:
                raise HTTPException(403, "cross-origin request refused")

    def template_context(self, request: Request) -> dict[str, Any]:
        """Extra values for every template (a CSRF token for the forms: ``csrf_field``, markup)."""
        return {}


class OpenPolicy(Policy):
    """Everyone is admin (loopback only; see the module docstring)."""
