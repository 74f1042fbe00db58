"""CSRF checks of the dashboard's actions (see ``security.py``): a per-session token, and requests the
browser marks as coming from another site refused whatever they carry."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def csrf_token(session: dict[str, Any]) -> str:
    """The CSRF token of a session (made on first use); put it in every form."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_refusal(request: Request) -> str:
    """Why this action fails the CSRF check, or '' when it passes (see the module docstring)."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"the request came from another site (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin == "null":
        return "the request came from an opaque origin"
    if origin and not same_origin(origin, request.headers.get("host", "")):
        return f"the request came from another origin ({origin})"
    expected = request.session.get("csrf") if "session" in request.scope else None
    if not isinstance(expected, str):
        return "no session: load a page of the dashboard first (its forms carry the token)"
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        body: bytes = getattr(request.state, "body", b"")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            values = parse_qs(body.decode("latin-1")).get(CSRF_FIELD)
            given = values[-1] if values else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return "missing or wrong CSRF token"
    return ""


def same_origin(origin: str, host: str) -> bool:
    """True when ``origin`` (``scheme://host[:port]``) names the host the request was sent to."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    own = urlsplit("//" + host)
    return (own.hostname or "").lower() == parts.hostname.lower() and (own.port or default) == (
        parts.port or default
    )


__all__ = ["CSRF_FIELD", "CSRF_HEADER", "csrf_refusal", "csrf_token", "same_origin"]
