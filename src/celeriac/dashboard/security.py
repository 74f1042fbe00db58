"""The dashboard's front door: :class:`AuthPolicy` (who is signed in, with which role, CSRF) and the
security headers, plugged into :func:`celeriac.dashboard.create_app` through its policy hook.

``celeriac dashboard`` always uses an :class:`AuthPolicy` built from its flags; an application that
mounts the dashboard passes one itself::

    from celeriac.dashboard import create_app
    from celeriac.dashboard.auth import AuthSettings
    from celeriac.dashboard.security import AuthPolicy

    asgi = create_app(app, policy=AuthPolicy(AuthSettings(tokens=(token,))))

Headers. Every response carries a strict Content Security Policy (scripts and styles from the
dashboard's own origin only: no inline script runs, so an XSS payload that slipped through escaping
stays inert), ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: same-origin``. Without auth
the dashboard answers only to loopback host names (421 otherwise): a DNS-rebinding page cannot reach it
through a name of its own.

CSRF. Every action (a POST) must carry the session's CSRF token (form field ``csrf_token``, which every
form of the dashboard has, or header ``X-CSRF-Token``) and must not come from another site
(``Sec-Fetch-Site`` ``cross-site``/``same-site`` or a foreign ``Origin`` are refused). The token lives in
the signed session cookie (``SameSite=Lax``: a cross-site POST does not even carry it). Requests
authenticated by a bearer token are exempt: a browser never attaches one on its own. This holds with
auth off too: any web page can POST to http://127.0.0.1:5555 from a browser on the machine.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute

from .auth import LOOPBACK_NAMES, AuthSettings, Method, Principal
from .csrf import CSRF_FIELD, csrf_refusal, csrf_token
from .policy import Policy, Role

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: no inline script or style, nothing from another origin, never framed
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

SESSION_COOKIE = "celeriac_session"
# verified basic-auth credentials, so that scrypt (~50 ms) runs once per user per few minutes, not
# on every page load; keyed by a keyed hash of user and password, never the password itself
_BASIC_CACHE_S = 300.0
_BASIC_CACHE_SIZE = 1024


class AuthPolicy(Policy):
    """The dashboard's policy for :class:`~celeriac.dashboard.auth.AuthSettings` (see the module
    docstring and ``celeriac.dashboard.auth``)."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = (settings or AuthSettings()).validate()
        self.authenticates = self.settings.enabled
        self._basic_cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)

    # ---- hooks of the dashboard ---------------------------------------------------------------------
    def middleware(self) -> Sequence[Middleware]:
        from starlette.middleware.sessions import SessionMiddleware

        s = self.settings
        return (
            Middleware(
                SecurityHeaders,
                loopback_only=not s.enabled,
                challenge=("Basic" if s.basic_users else "Bearer") if s.enabled else None,
            ),
            Middleware(
                SessionMiddleware,
                secret_key=s.session_secret(),
                session_cookie=SESSION_COOKIE,
                max_age=s.session_max_age_s,
                same_site="lax",
                https_only=s.secure_cookies,
            ),
        )

    def routes(self) -> Sequence[BaseRoute]:
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def csrf(request: Request) -> Response:
            # for scripts on basic auth or a session: the token their POSTs must carry
            if self.role(request) is None:
                return JSONResponse({"error": "sign in first"}, status_code=401)
            return JSONResponse({"csrf_token": csrf_token(request.session)})

        routes: list[BaseRoute] = [Route("/auth/csrf", csrf, methods=["GET"])]
        if self.settings.oidc is not None:
            from .oidc import login_routes

            routes += login_routes(self.settings)
        return routes

    def role(self, request: Request) -> Role | None:
        principal = self.principal(request)
        return principal.role if principal is not None else None

    def login_url(self, request: Request) -> str | None:
        if self.settings.oidc is None:
            return None
        root = request.scope.get("root_path", "")
        path = request.url.path[len(root) :] or "/"
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return f"{root}/auth/login?next={quote(target, safe='')}"

    def check_action(self, request: Request) -> None:
        principal = self.principal(request)
        if principal is not None and principal.method == "token":
            return  # a bearer token is never sent by a browser on its own: no CSRF possible
        refusal = csrf_refusal(request)
        if refusal:
            raise HTTPException(403, f"CSRF check failed: {refusal}")

    def template_context(self, request: Request) -> dict[str, Any]:
        principal = self.principal(request)
        if principal is None:
            return {}
        token = csrf_token(request.session)
        field = Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)
        who = (
            Markup('<span class="user">{}</span>').format(principal.name)
            if principal.method != "none"
            else ""
        )
        signout = ""
        if principal.method in ("oidc", "github"):
            root = escape(request.scope.get("root_path", ""))
            signout = Markup(
                '<form class="signout" method="post" action="{}/auth/logout">{}'
                '<button type="submit">Sign out</button></form>'
            ).format(root, field)
        return {"csrf_field": field, "principal": principal, "auth_header": Markup(who) + signout}

    # ---- authentication ----------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal | None:
        """Who made ``request`` (worked out once per request)."""
        state = request.scope.setdefault("state", {})
        if "principal" not in state:
            state["principal"] = self._authenticate(request)
        found = state["principal"]
        return found if isinstance(found, Principal) else None

    def _authenticate(self, request: Request) -> Principal | None:
        s = self.settings
        if not s.enabled:
            return Principal("local", s.role_for("local"), "none")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return s.check_token(credentials.strip())
        path = request.url.path[len(request.scope.get("root_path", "")) :]
        if path == "/metrics" and s.metrics_public:
            return Principal("metrics", "read", "none")
        if s.trusted_header:
            value = request.headers.get(s.trusted_header)
            client = request.client.host if request.client else None
            if value and s.trusts_proxy(client):
                email = value if "@" in value else None
                if s.allowed(value, email, email_verified=True):
                    return Principal(value, s.role_for(value, email), "header", email)
                return None
        if scheme.lower() == "basic" and credentials and s.basic_users:
            return self._basic(credentials.strip())
        if s.oidc is not None and "session" in request.scope:
            user = request.session.get("user")
            if isinstance(user, dict):
                key, name, email = user.get("key"), user.get("name"), user.get("email")
                orgs = user.get("orgs") or []
                verified = bool(user.get("email_verified"))
                if isinstance(key, str) and isinstance(name, str) and s.allowed(key, email, verified, orgs):
                    # the allow-list is checked again on every request: a changed setting applies at once
                    method: Method = "github" if s.oidc.provider == "github" else "oidc"
                    return Principal(name, s.role_for(key, email if verified else None, orgs), method, email)
        return None

    def _basic(self, credentials: str) -> Principal | None:
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        key = hmac.digest(self._cache_key, f"{user}\0{password}".encode(), hashlib.sha256)
        now = time.monotonic()
        hit = self._basic_cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = self.settings.check_basic(user, password)
        if principal is not None:
            self._basic_cache[key] = (principal, now + _BASIC_CACHE_S)
            while len(self._basic_cache) > _BASIC_CACHE_SIZE:
                self._basic_cache.popitem(last=False)
        return principal


def loopback_host(host: str) -> bool:
    """True when a ``Host`` header names a loopback address (``localhost``, ``127.x``, ``[::1]``)."""
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES or name.startswith("127.")


class SecurityHeaders:
    """ASGI middleware: the security headers on every response; with ``loopback_only``, 421 for a
    ``Host`` that is not a loopback name; with ``challenge`` (``Basic`` or ``Bearer``), that
    ``WWW-Authenticate`` challenge on every 401 (a browser then asks for a basic-auth password)."""

    def __init__(self, app: ASGIApp, *, loopback_only: bool, challenge: str | None) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.challenge: tuple[bytes, bytes] | None = None
        if challenge is not None:
            extra = ', charset="UTF-8"' if challenge == "Basic" else ""
            self.challenge = (b"www-authenticate", f'{challenge} realm="celeriac dashboard"{extra}'.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if self.challenge is not None and message["status"] == 401:
                    headers.append(self.challenge)
                message["headers"] = headers
            await send(message)

        if self.loopback_only:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not loopback_host(host):
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send_with_headers(
                    {
                        "type": "http.response.body",
                        "body": b"this dashboard answers to loopback names only (no auth is configured)",
                    }
                )
                return
        await self.app(scope, receive, send_with_headers)


__all__ = ["CONTENT_SECURITY_POLICY", "AuthPolicy", "SecurityHeaders", "loopback_host"]
