"""Query-parameter parsing and the template filters of the dashboard (small pure helpers)."""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response


class BadRequest(Exception):
    """A query parameter the dashboard cannot use (answered with 400 and the reason)."""


def quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def choice(request: Request, name: str, options: tuple[str, ...], default: str) -> str:
    v = request.query_params.get(name, default)
    if v not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}")
    return v


def int_param(request: Request, name: str, default: int) -> int:
    return int_value(request.query_params.get(name), default)


def int_value(v: str | None, default: int) -> int:
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"{v!r} is not a whole number") from None


def limit(request: Request) -> int:
    n = int_param(request, "limit", 50)
    if not 1 <= n <= 500:
        raise BadRequest("limit must be between 1 and 500")
    return n


def time_param(v: str | None) -> int | None:
    """Epoch milliseconds from ``2026-12-03T21:00`` (UTC) or a number of epoch ms."""
    if not v:
        return None
    if v.isdigit():
        return int(v)
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise BadRequest(f"{v!r} is not a time (YYYY-MM-DDTHH:MM, UTC)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def ts(ms: int | float | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return dur(seconds)


def dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != int(v):
        return f"{v:,.2f}"
    return f"{int(v):,}"


def action_done(request: Request, where: str, message: str, status: int = 200) -> Response:
    """After an action: JSON for the API, else a redirect to ``where`` that shows ``message``."""
    root = request.scope.get("root_path", "")
    if request.url.path.startswith(f"{root}/api/"):
        return JSONResponse({"ok": status < 400, "message": message}, status_code=status)
    sep = "&" if "?" in where else "?"
    return RedirectResponse(f"{root}{where}{sep}done={quote(message)}", status_code=303)
