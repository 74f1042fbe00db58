"""Who may use the dashboard, and as what: the auth settings, password hashes and the bind rule.

The dashboard shows task arguments, tracebacks and queue contents, and its actions (replay, purge,
revoke) change what runs: treat access to it as access to Redis. So:

* Without any auth configured it serves loopback only: :func:`check_bind_address` refuses any other
  address with a clear error, and the middleware refuses requests whose ``Host`` is not a loopback
  name (a DNS-rebinding page cannot reach it through a name of its own).
* With auth it accepts, in this order: a bearer token (``Authorization: Bearer``; for scripts and
  Prometheus), a user name set by a trusted reverse proxy (oauth2-proxy) coming from an allowed proxy
  address, HTTP basic auth against scrypt hashes (:func:`hash_password`), and a session made by an
  OIDC or GitHub sign-in (``oidc.py``). Several may be on at once (OIDC for people, a token for
  scrapers).
* Roles: ``read`` sees everything; ``admin`` may also act (replay, purge, revoke, retry). With an
  ``admins`` list only those principals are admins; without one every allowed principal is, unless
  ``read_only`` is set (then nobody is). The read token is always ``read``.

Which users an OIDC/GitHub/proxy sign-in lets in is an allow-list (users, e-mail domains, GitHub
organisations); an empty allow-list is refused at start: "anyone with a Google account" is never a
default (Flower's CVE-2022-30034 was an e-mail pattern that matched too much).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..exceptions import ConfigurationError

Role = Literal["read", "admin"]

#: how a request was authenticated
Method = Literal["none", "token", "basic", "header", "oidc", "github"]

# scrypt cost: ~50 ms and 16 MiB on this class of machine; stored in the hash so it can be raised later
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_HASH_PREFIX = "scrypt"

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``, as ``scrypt$N$r$p$salt$hash`` (base64). Put this, not the
    password, in ``--basic-auth user:HASH`` (``celeriac dashboard-password`` prints one)."""
    if not password:
        raise ConfigurationError("password", "an empty password cannot be hashed: choose a password")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"{_HASH_PREFIX}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _HASH_PREFIX:
        raise ConfigurationError(
            "--basic-auth",
            f"not a celeriac password hash: {stored[:12]!r}... (expected scrypt$N$r$p$salt$hash; "
            "make one with `celeriac dashboard-password`)",
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise ConfigurationError(
            "--basic-auth", f"malformed password hash ({exc}); make one with `celeriac dashboard-password`"
        ) from None
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and salt and digest):
        raise ConfigurationError("--basic-auth", "password hash has out-of-range scrypt parameters")
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (a :func:`hash_password` hash); constant time."""
    n, r, p, salt, digest = _parse_hash(stored)
    got = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(digest)
    )
    return hmac.compare_digest(got, digest)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, and with which role."""

    name: str
    role: Role
    method: Method
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class OIDCSettings:
    """Sign-in with an OpenID Connect issuer (Google, Okta, Keycloak, Dex, ...) or with GitHub.

    ``issuer`` is the issuer URL (its ``/.well-known/openid-configuration`` is read at the first
    sign-in). ``provider="github"`` uses GitHub's OAuth2 endpoints instead (GitHub is not an OIDC
    issuer); ``github_api_url`` and ``github_url`` exist for GitHub Enterprise.
    """

    client_id: str
    client_secret: str
    issuer: str = ""
    provider: Literal["oidc", "github"] = "oidc"
    scopes: str = ""
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Everything about access to one dashboard. The default (nothing set) is loopback-only, no sign-in.

    Args:
        tokens: bearer tokens with the admin role (compared in constant time).
        read_tokens: bearer tokens with the read role.
        basic_users: user name -> :func:`hash_password` hash, for HTTP basic auth.
        oidc: sign-in with an OIDC issuer or GitHub (needs ``secret_key`` for more than one replica).
        trusted_header: a header a reverse proxy sets to the signed-in user (``X-Forwarded-Email``,
            ``X-Forwarded-User``); honoured only from ``trusted_proxies``.
        trusted_proxies: addresses or networks whose ``trusted_header`` is believed (loopback by default).
        allow_users: user names or e-mail addresses let in by OIDC/GitHub/proxy sign-in.
        allow_domains: e-mail domains let in (verified e-mail addresses only).
        allow_orgs: GitHub organisations whose members are let in (GitHub sign-in only).
        admins: principals (names, e-mails, ``@domain``, ``org:NAME``) with the admin role; empty means
            every allowed principal.
        read_only: nobody is admin; actions are refused (403) and their buttons hidden.
        secret_key: signs session cookies and CSRF tokens; random per process when empty (sessions
            then end at a restart and do not work across replicas).
        secure_cookies: cookies only over HTTPS (``Secure``); browsers also treat http://127.0.0.1 and
            http://localhost as secure.
        metrics_public: serve ``/metrics`` without auth (for a scraper on a private network).
        session_max_age_s: how long a sign-in lasts.
    """

    tokens: tuple[str, ...] = ()
    read_tokens: tuple[str, ...] = ()
    basic_users: Mapping[str, str] = field(default_factory=dict)
    oidc: OIDCSettings | None = None
    trusted_header: str = ""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    allow_users: frozenset[str] = frozenset()
    allow_domains: frozenset[str] = frozenset()
    allow_orgs: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    read_only: bool = False
    secret_key: str = ""
    secure_cookies: bool = True
    metrics_public: bool = False
    session_max_age_s: int = 8 * 3600

    @property
    def enabled(self) -> bool:
        """True when some way of signing in is configured (so a non-loopback bind is allowed)."""
        return bool(self.tokens or self.read_tokens or self.basic_users or self.oidc or self.trusted_header)

    def validate(self) -> AuthSettings:
        """Check the settings; return them. Raises :class:`ConfigurationError` naming what to fix."""
        for stored in self.basic_users.values():
            _parse_hash(stored)
        for token in (*self.tokens, *self.read_tokens):
            if len(token) < 16:
                raise ConfigurationError(
                    "--token",
                    "a dashboard token must be at least 16 characters; make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
                )
        needs_allow = [
            what
            for what, on in (("OIDC/GitHub sign-in", self.oidc), ("trusted header", self.trusted_header))
            if on
        ]
        if needs_allow and not (self.allow_users or self.allow_domains or self.allow_orgs):
            raise ConfigurationError(
                "--allow-user",
                f"{' and '.join(needs_allow)} needs an allow-list: set --allow-user, --allow-domain or "
                "--allow-org (otherwise anyone the identity provider knows would get in)",
            )
        if self.allow_orgs and (self.oidc is None or self.oidc.provider != "github"):
            raise ConfigurationError("--allow-org", "--allow-org needs GitHub sign-in (--github)")
        if self.oidc is not None:
            if not (self.oidc.client_id and self.oidc.client_secret):
                raise ConfigurationError(
                    "--oidc-client-id", "OIDC/GitHub sign-in needs a client id and a client secret"
                )
            if self.oidc.provider == "oidc" and not self.oidc.issuer.startswith(("https://", "http://")):
                raise ConfigurationError(
                    "--oidc-issuer", f"the issuer must be an http(s) URL, not {self.oidc.issuer!r}"
                )
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigurationError(
                    "--trusted-proxy", f"{net!r} is not an IP address or network"
                ) from None
        return self

    def session_secret(self) -> str:
        return self.secret_key or _PROCESS_SECRET

    # ---- who is let in, and as what -------------------------------------------------------------
    def allowed(self, name: str, email: str | None, email_verified: bool, orgs: Iterable[str] = ()) -> bool:
        """True when a signed-in identity passes the allow-list (exact, case-insensitive matches)."""
        candidates = {name.lower()}
        if email and email_verified:
            candidates.add(email.lower())
        if candidates & {u.lower() for u in self.allow_users}:
            return True
        if email and email_verified and "@" in email:
            domain = email.rsplit("@", 1)[1].lower()
            if domain in {d.lower().lstrip("@") for d in self.allow_domains}:
                return True
        return bool({o.lower() for o in orgs} & {o.lower() for o in self.allow_orgs})

    def role_for(self, name: str, email: str | None = None, orgs: Iterable[str] = ()) -> Role:
        if self.read_only:
            return "read"
        if not self.admins:
            return "admin"
        admins = {a.lower() for a in self.admins}
        keys = {name.lower(), *(f"org:{o.lower()}" for o in orgs)}
        if email:
            keys |= {email.lower(), "@" + email.rsplit("@", 1)[-1].lower()}
        return "admin" if keys & admins else "read"

    def check_token(self, token: str) -> Principal | None:
        """The principal of a bearer token, or None (every token is compared, in constant time)."""
        found: Principal | None = None
        for candidate in self.tokens:
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = Principal("token", "read" if self.read_only else "admin", "token")
        for candidate in self.read_tokens:
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = found or Principal("read-token", "read", "token")
        return found

    def check_basic(self, user: str, password: str) -> Principal | None:
        stored = self.basic_users.get(user)
        if stored is None:
            # same work for an unknown user, so timing does not tell which names exist
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, stored):
            return None
        return Principal(user, self.role_for(user), "basic")

    def trusts_proxy(self, client_host: str | None) -> bool:
        if not client_host:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies)


_PROCESS_SECRET = secrets.token_urlsafe(32)
_DUMMY_HASH = hash_password("celeriac-dummy", salt=b"\0" * 16)


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_address(address: str, settings: AuthSettings) -> None:
    """Refuse to serve on a non-loopback address without auth (raises :class:`ConfigurationError`)."""
    if is_loopback(address) or settings.enabled:
        return
    raise ConfigurationError(
        "--address",
        f"refusing to serve the dashboard on {address} without authentication: it is not a loopback "
        "address and no sign-in is configured. Anyone who can reach it could read task arguments and "
        "replay or purge tasks. "
        "Configure auth (--token, --basic-auth, --oidc-issuer, --github or --trusted-header; "
        "see docs/dashboard-auth.md) or bind to 127.0.0.1",
    )


def parse_basic_users(entries: Sequence[str]) -> dict[str, str]:
    """``["alice:scrypt$...", ...]`` -> ``{"alice": "scrypt$..."}`` (a hash has no ``:``)."""
    users: dict[str, str] = {}
    for entry in entries:
        user, sep, stored = entry.partition(":")
        if not sep or not user or not stored:
            raise ConfigurationError(
                "--basic-auth",
                f"takes USER:HASH, got {entry[:20]!r}... (make the hash with `celeriac dashboard-password`)",
            )
        if not stored.startswith(_HASH_PREFIX + "$"):
            raise ConfigurationError(
                "--basic-auth",
                f"{user}: give a password hash, not a password (make one with `celeriac dashboard-password`)",
            )
        users[user] = stored
    return users


__all__ = [
    "AuthSettings",
    "OIDCSettings",
    "Principal",
    "Role",
    "check_bind_address",
    "hash_password",
    "is_loopback",
    "parse_basic_users",
    "verify_password",
]
