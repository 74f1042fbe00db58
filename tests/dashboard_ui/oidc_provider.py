"""A minimal OpenID Connect issuer (and GitHub look-alike) for the tests, served on loopback only.

It does what a real issuer does for the authorization code flow, no more: discovery, JWKS, an
authorize page with a sign-in form (so a browser test types a user name), a token endpoint that checks
the client secret, the redirect URI and the PKCE verifier, and an RS256-signed id_token with the nonce.
``/login/oauth/*`` and ``/api/user*`` answer as GitHub's do, for the GitHub sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class User:
    name: str
    email: str
    email_verified: bool = True
    orgs: list[str] = field(default_factory=list)
    #: what the id_token says as preferred_username (default: the name); users may pick it on some issuers
    preferred_username: str | None = None


@dataclass
class Grant:
    user: User
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None


class Provider:
    """The issuer's state. ``issuer`` is set once the server is listening (its URL has the port)."""

    def __init__(self, client_id: str, client_secret: str, users: list[User]) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = {u.name: u for u in users}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.issuer = ""
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, User] = {}
        self.token_requests = 0
        #: set to make the next id_token wrong in one way ("nonce", "aud", "signature", "iss")
        self.tamper: str | None = None

    # ---- OIDC -------------------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        i = self.issuer
        return JSONResponse(
            {
                "issuer": i,
                "authorization_endpoint": f"{i}/authorize",
                "token_endpoint": f"{i}/token",
                "jwks_uri": f"{i}/jwks",
                "userinfo_endpoint": f"{i}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params) if request.method == "GET" else dict(await request.form())
        if params.get("client_id") != self.client_id:
            return HTMLResponse("unknown client", status_code=400)
        if params.get("response_type") != "code":
            return HTMLResponse("unsupported response_type", status_code=400)
        if request.method == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in params.items()
            )
            return HTMLResponse(
                "<!doctype html><html><head><title>Test issuer: sign in</title></head><body>"
                '<h1>Test issuer</h1><form method="post">' + hidden + '<label>User <input name="username" '
                'id="username"></label><button type="submit" id="sign-in">Sign in</button></form></body></html>'
            )
        user = self.users.get(str(params.get("username", "")))
        if user is None:
            return HTMLResponse("no such user", status_code=401)
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(
            user,
            self.client_id,
            str(params["redirect_uri"]),
            params.get("nonce"),
            params.get("code_challenge"),
        )
        query = urlencode({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = dict(await request.form())
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code", "")), None)  # one use only
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if grant.code_challenge is not None:
            verifier = str(form.get("code_verifier", ""))
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if digest != grant.code_challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        access = secrets.token_urlsafe(16)
        self.tokens[access] = grant.user
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 300}
        if grant.nonce is not None or "/login/oauth/" not in request.url.path:
            body["id_token"] = self._id_token(grant)
            body["scope"] = "openid email profile"
        else:
            body["scope"] = "read:user user:email read:org"
        return JSONResponse(body)

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"user-{grant.user.name}",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": grant.user.email,
            "email_verified": grant.user.email_verified,
            "preferred_username": grant.user.preferred_username or grant.user.name,
        }
        tamper, self.tamper = self.tamper, None
        key = self.key
        if tamper == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif tamper == "aud":
            claims["aud"] = "another-client"
        elif tamper == "iss":
            claims["iss"] = "http://127.0.0.1:1/"
        elif tamper == "signature":
            key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, key)

    def _bearer_user(self, request: Request) -> User | None:
        auth = request.headers.get("authorization", "")
        return self.tokens.get(auth[7:]) if auth.lower().startswith("bearer ") else None

    async def userinfo(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(
            {"sub": f"user-{user.name}", "email": user.email, "preferred_username": user.name}
        )

    # ---- GitHub look-alike ------------------------------------------------------------------------
    async def gh_user(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"login": user.name, "id": 1})

    async def gh_emails(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse([{"email": user.email, "primary": True, "verified": user.email_verified}])

    async def gh_orgs(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse([{"login": org} for org in user.orgs])

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo),
                Route("/login/oauth/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/login/oauth/access_token", self.token, methods=["POST"]),
                Route("/api/user", self.gh_user),
                Route("/api/user/emails", self.gh_emails),
                Route("/api/user/orgs", self.gh_orgs),
            ]
        )
