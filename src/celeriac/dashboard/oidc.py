"""Sign-in with an OpenID Connect issuer or with GitHub, through Authlib: the ``/auth/*`` routes.

``GET /auth/login?next=/path`` redirects to the provider (authorization code flow with PKCE S256, a
``state`` and, for OIDC, a ``nonce``); ``GET /auth/callback`` exchanges the code, checks the id_token
(signature against the issuer's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``: Authlib does this), applies
the allow-list and stores ``{name, email, email_verified, orgs}`` in the signed session cookie;
``POST /auth/logout`` (CSRF-checked) clears it.

GitHub is OAuth2 without id_tokens: the user is read from ``GET /user``, verified e-mails from
``GET /user/emails`` and organisations from ``GET /user/orgs`` (scope ``read:org``; an organisation that
restricts OAuth apps must approve the app, or its members will not be listed).
"""

from __future__ import annotations

import html
import logging
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import AuthSettings
from .csrf import csrf_refusal

logger = logging.getLogger("celeriac.dashboard")


def _safe_next(value: str | None) -> str:
    # only a path on this site: never an open redirect to //evil.example or https://...
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def login_routes(settings: AuthSettings) -> list[BaseRoute]:
    """The ``/auth/*`` routes for ``settings.oidc``."""
    import httpx
    from authlib.integrations.starlette_client import OAuth, OAuthError
    from joserfc.errors import JoseError

    assert settings.oidc is not None
    conf = settings.oidc
    oauth = OAuth()
    if conf.provider == "github":
        base = conf.github_url.rstrip("/")
        client = oauth.register(
            name="github",
            client_id=conf.client_id,
            client_secret=conf.client_secret,
            authorize_url=f"{base}/login/oauth/authorize",
            access_token_url=f"{base}/login/oauth/access_token",
            api_base_url=conf.github_api_url.rstrip("/") + "/",
            client_kwargs={"scope": conf.scopes or "read:user user:email read:org"},
            code_challenge_method="S256",
        )
    else:
        client = oauth.register(
            name="oidc",
            client_id=conf.client_id,
            client_secret=conf.client_secret,
            server_metadata_url=conf.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": conf.scopes or "openid email profile"},
            code_challenge_method="S256",
        )

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    async def login(request: Request) -> Response:
        request.session["next"] = _safe_next(request.query_params.get("next"))
        redirect_uri = str(request.url_for("auth_callback"))
        response: Response = await client.authorize_redirect(request, redirect_uri)
        return response

    async def callback(request: Request) -> Response:
        try:
            token = await client.authorize_access_token(request)
            identity = await _identity(client, conf.provider, token)
        except OAuthError as exc:
            logger.warning("dashboard sign-in failed: %s: %s", exc.error, exc.description)
            return _page(f"Sign-in failed: {exc.error}: {exc.description or ''}", 400)
        except (JoseError, httpx.HTTPError, ValueError, KeyError) as exc:
            # a bad id_token (signature, iss, aud, exp, nonce) or an unreachable issuer
            logger.warning("dashboard sign-in failed: %s: %s", type(exc).__name__, exc)
            return _page(f"Sign-in failed: {type(exc).__name__}: {exc}", 400)
        key, name, email, verified, orgs = identity
        if not settings.allowed(key, email, verified, orgs):
            request.session.pop("user", None)
            return _page(f"{name} is not allowed to use this dashboard.", 403)
        request.session["user"] = {
            "key": key,
            "name": name,
            "email": email,
            "email_verified": verified,
            "orgs": orgs,
        }
        request.session["csrf"] = secrets.token_urlsafe(32)  # a new sign-in gets a new token
        return RedirectResponse(_root(request) + request.session.pop("next", "/"), status_code=303)

    async def logout(request: Request) -> Response:
        request.state.body = await request.body()
        refusal = csrf_refusal(request)
        if refusal:
            return JSONResponse({"error": f"CSRF check failed: {refusal}"}, status_code=403)
        request.session.clear()
        return RedirectResponse(_root(request) + "/auth/signed-out", status_code=303)

    async def signed_out(request: Request) -> Response:
        return _page("You are signed out.", 200, sign_in=_root(request) + "/auth/login")

    return [
        Route("/auth/login", login, methods=["GET"]),
        Route("/auth/callback", callback, methods=["GET"], name="auth_callback"),
        Route("/auth/logout", logout, methods=["POST"]),
        Route("/auth/signed-out", signed_out, methods=["GET"]),
    ]


async def _identity(
    client: Any, provider: str, token: dict[str, Any]
) -> tuple[str, str, str | None, bool, list[str]]:
    """(key, display name, email, email verified, GitHub organisations) of a signed-in user.

    The key is what allow-lists and ``--admin`` match besides the verified e-mail: the GitHub login,
    or the OIDC ``sub`` claim. Never ``preferred_username``: the OIDC spec does not make it unique or
    stable, and on many issuers users choose it themselves."""
    if provider == "github":
        user = (await client.get("user", token=token)).json()
        name = str(user.get("login") or "")
        email, verified = None, False
        emails = (await client.get("user/emails", token=token)).json()
        if isinstance(emails, list):
            primary = [e for e in emails if isinstance(e, dict) and e.get("primary") and e.get("verified")]
            if primary:
                email, verified = str(primary[0]["email"]), True
        orgs_json = (await client.get("user/orgs", token=token)).json()
        orgs = (
            [str(o["login"]) for o in orgs_json if isinstance(o, dict) and "login" in o]
            if isinstance(orgs_json, list)
            else []
        )
        return name, name, email, verified, orgs
    claims = token.get("userinfo") or {}
    email = claims.get("email")
    sub = str(claims.get("sub") or "")
    if not sub:
        raise ValueError("the id_token has no sub claim")
    verified = claims.get("email_verified") is True
    # shown in the page header: the verified e-mail (a chosen preferred_username could pose as another)
    name = email if email and verified else claims.get("preferred_username") or sub
    return sub, str(name), (str(email) if email else None), verified, []


def _page(text: str, status: int, sign_in: str | None = None) -> HTMLResponse:
    link = f'<p><a href="{html.escape(sign_in)}">Sign in again</a></p>' if sign_in else ""
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>celeriac dashboard</title></head>"
        f"<body><main><p>{html.escape(text)}</p>{link}</main></body></html>"
    )
    return HTMLResponse(body, status_code=status)


__all__ = ["login_routes"]
