"""The dashboard's front door: authentication, roles, CSRF and security headers, as one ASGI wrapper.

:func:`protect` wraps the dashboard's ASGI app (``create_app`` calls it; a mounted dashboard gets it
too). Every response carries a strict Content Security Policy (scripts and styles from the dashboard's
own origin only: no inline script can run, so an XSS payload that slipped through escaping stays inert),
``X-Frame-Options: DENY`` and ``nosniff``.

CSRF. Every request that changes something (any method but GET/HEAD/OPTIONS) must carry the session's
CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``) and must not come from another site
(``Sec-Fetch-Site`` ``cross-site``/``same-site`` or a foreign ``Origin`` are refused). The token lives in
the signed session cookie (``SameSite=Lax``, so a cross-site POST does not even carry it). Requests
authenticated by a bearer token are exempt: a browser never attaches one by itself. This holds with auth
off too: a web page can POST to http://127.0.0.1:5555 from any browser on the machine.

Roles. Actions need the admin role; a read-only principal gets 403 for every unsafe method.

Open paths: ``/healthz``, ``/static/*``, ``/favicon.ico`` and the sign-in routes (``/auth/*``);
``/metrics`` only with ``metrics_public``. ``GET /auth/csrf`` gives a signed-in script its CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from .auth import LOOPBACK_NAMES, AuthSettings, Method, Principal

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

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "celeriac_session"
_OPEN_PREFIXES = ("/static/", "/auth/")
_OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
_MAX_FORM_BYTES = 64 * 1024


def csrf_token(scope: Scope) -> str:
    """The CSRF token of this request's session (made on first use); put it in every form."""
    session: dict[str, Any] = scope.setdefault("session", {})
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def principal_of(scope: Scope) -> Principal | None:
    """The principal :func:`protect` authenticated (``request.state.principal`` in a view)."""
    state = scope.get("state") or {}
    value = state.get("principal")
    return value if isinstance(value, Principal) else None


class _Guard:
    def __init__(self, app: ASGIApp, settings: AuthSettings, login: ASGIApp | None) -> None:
        self.app = app
        self.settings = settings
        self.login = login  # the /auth/* routes (OIDC/GitHub sign-in), when configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        path = _relative_path(scope)
        headers = _headers(scope)
        if not self.settings.enabled and not _loopback_host(headers.get("host", "")):
            # auth off means loopback only: a DNS-rebinding page reaches us through a name of its own
            await _plain(send, 421, "this dashboard answers to loopback names only (no auth is configured)")
            return
        if path.startswith("/auth/") and path != "/auth/csrf" and self.login is not None:
            await self.login(scope, receive, send)
            return
        is_open = path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES)
        is_open = is_open or (path == "/metrics" and self.settings.metrics_public)
        principal = await self._authenticate(scope, headers)
        scope.setdefault("state", {})["principal"] = principal
        if principal is None and not is_open:
            await self._challenge(scope, headers, path, send)
            return
        method = scope["method"]
        if method not in SAFE_METHODS:
            if principal is not None and principal.method == "token":
                pass  # a bearer token is never sent by a browser on its own: no CSRF possible
            else:
                refusal, receive = await _csrf_refusal(scope, headers, receive)
                if refusal:
                    await _plain(send, 403, f"CSRF check failed: {refusal}")
                    return
            if principal is not None and not principal.is_admin and not is_open:
                await _plain(send, 403, f"{principal.name} has the read role; this action needs admin")
                return
        if principal is not None:
            scope["state"]["csrf_token"] = csrf_token(scope)
            if path == "/auth/csrf":  # for scripts on basic auth: the token their POSTs must carry
                body = json.dumps({"csrf_token": scope["state"]["csrf_token"]}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, headers: dict[str, str]) -> Principal | None:
        s = self.settings
        if not s.enabled:
            return Principal("local", s.role_for("local"), "none")
        auth = headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return s.check_token(credentials.strip())
        if s.trusted_header:
            value = headers.get(s.trusted_header.lower())
            client = scope.get("client")
            if value and s.trusts_proxy(client[0] if client else None):
                email = value if "@" in value else None
                if s.allowed(value, email, email_verified=True):
                    return Principal(value, s.role_for(value, email), "header", email)
                return None
        if scheme.lower() == "basic" and credentials and s.basic_users:
            try:
                user, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return s.check_basic(user, password)
        session = scope.get("session") or {}
        signed_in = session.get("user")
        if s.oidc is not None and isinstance(signed_in, dict):
            name, email, orgs = signed_in.get("name"), signed_in.get("email"), signed_in.get("orgs") or []
            if isinstance(name, str) and s.allowed(name, email, bool(signed_in.get("email_verified")), orgs):
                method: Method = "github" if s.oidc.provider == "github" else "oidc"
                return Principal(name, s.role_for(name, email, orgs), method, email)
        return None

    async def _challenge(self, scope: Scope, headers: dict[str, str], path: str, send: Send) -> None:
        s = self.settings
        wants_html = "text/html" in headers.get("accept", "") and not path.startswith("/api/")
        if s.oidc is not None and wants_html and scope["method"] in SAFE_METHODS:
            target = path + (
                ("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else ""
            )
            location = f"{scope.get('root_path', '')}/auth/login?next={quote(target, safe='')}"
            await send(
                {"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode())]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        challenge = 'Basic realm="celeriac dashboard", charset="UTF-8"' if s.basic_users else "Bearer"
        await _plain(send, 401, "authentication required", [(b"www-authenticate", challenge.encode())])


def protect(app: ASGIApp, settings: AuthSettings) -> ASGIApp:
    """``app`` behind the dashboard's auth, CSRF and header rules (see the module docstring)."""
    from starlette.middleware.sessions import SessionMiddleware

    settings.validate()
    login: ASGIApp | None = None
    if settings.oidc is not None:
        from .oidc import login_routes

        login = login_routes(settings)
    guard = _Guard(app, settings, login)
    return SessionMiddleware(
        guard,
        secret_key=settings.session_secret(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )


# ---- helpers -------------------------------------------------------------------------------------
def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _relative_path(scope: Scope) -> str:
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _loopback_host(host: str) -> bool:
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES or name.startswith("127.")


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _plain(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    origin_port = parts.port or default
    host_parts = urlsplit("//" + host)
    return (host_parts.hostname or "").lower() == parts.hostname.lower() and (
        host_parts.port or default
    ) == origin_port


async def _csrf_refusal(scope: Scope, headers: dict[str, str], receive: Receive) -> tuple[str, Receive]:
    """Why this unsafe request fails the CSRF check ('' when it passes), and a ``receive`` that still
    yields the whole body (the form was read here to find the token)."""
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"request came from another site (Sec-Fetch-Site: {site})", receive
    origin = headers.get("origin")
    if origin and origin != "null" and not _same_origin(origin, headers.get("host", "")):
        return f"request came from another origin ({origin})", receive
    if origin == "null":
        return "request came from an opaque origin", receive
    expected = (scope.get("session") or {}).get("csrf")
    if not isinstance(expected, str):
        return "no session: load a page of the dashboard first (its forms carry the token)", receive
    given = headers.get(CSRF_HEADER)
    if given is None:
        body, receive = await _read_body(receive)
        given = _form_field(headers.get("content-type", ""), body, CSRF_FIELD)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return "missing or wrong CSRF token", receive
    return "", receive


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body") or size > _MAX_FORM_BYTES:
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _form_field(content_type: str, body: bytes, name: str) -> str | None:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    from urllib.parse import parse_qs

    values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(name)
    return values[0] if values else None


__all__ = ["CONTENT_SECURITY_POLICY", "CSRF_FIELD", "csrf_token", "principal_of", "protect"]
