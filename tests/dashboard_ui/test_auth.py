"""Dashboard auth without a browser: bind rule, tokens, basic auth, trusted header, roles, CSRF,
security headers, and the OIDC and GitHub sign-in end to end against an issuer the test serves."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from celeriac import Celeriac
from celeriac.dashboard import create_app
from celeriac.dashboard.auth import (
    AuthSettings,
    OIDCSettings,
    check_bind_address,
    hash_password,
    parse_basic_users,
    verify_password,
)
from celeriac.dashboard.security import CONTENT_SECURITY_POLICY, AuthPolicy
from celeriac.exceptions import ConfigurationError

from .oidc_provider import Provider, User
from .servers import free_port, serve

TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    """A celeriac app on the test's private Redis, whose dashboard the tests sign in to."""
    a = Celeriac("authtest", broker=redis_url)
    yield a
    a.close()


def dashboard(app: Celeriac, settings: AuthSettings) -> Any:
    return create_app(app, policy=AuthPolicy(settings))


def client(app: Celeriac, settings: AuthSettings, host: str = "127.0.0.1:5555") -> TestClient:
    # https: the session cookie is Secure by default, and httpx sends it over https only
    return TestClient(dashboard(app, settings), base_url=f"https://{host}", follow_redirects=False)


def who(page: httpx.Response) -> str:
    """``"<user> <role>"`` as the page header shows them."""
    role = re.search(r'<span class="role">([^<]*)</span>', page.text)
    user = re.search(r'<span class="user">([^<]*)</span>', page.text)
    assert role, page.text
    return f"{user.group(1) if user else '-'} {role.group(1)}"


def csrf(c: httpx.Client | TestClient, base: str = "", **kw: Any) -> str:
    token: str = c.get(base + "/auth/csrf", **kw).json()["csrf_token"]
    return token


ACTION = "/dead-letters/default/purge"  # an admin action: answers 303 (back to the page) when done


# ---- passwords and the bind rule ------------------------------------------------------------------
def test_password_hash_round_trip() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert hash_password("s3cret") != stored  # salted


def test_bad_password_hash_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="celeriac dashboard-password"):
        verify_password("x", "plain-text-password")
    with pytest.raises(ConfigurationError, match="not a password"):
        parse_basic_users(["alice:hunter2"])
    with pytest.raises(ConfigurationError, match="USER:HASH"):
        parse_basic_users(["alice"])


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_bind_needs_no_auth(address: str) -> None:
    check_bind_address(address, AuthSettings())


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3", "dashboard.example.com"])
def test_non_loopback_bind_without_auth_is_refused(address: str) -> None:
    with pytest.raises(ConfigurationError, match="not a loopback address and no sign-in is configured"):
        check_bind_address(address, AuthSettings())
    check_bind_address(address, AuthSettings(tokens=(TOKEN,)))


def test_settings_are_checked() -> None:
    oidc = OIDCSettings("client", "secret", issuer="https://issuer.example")
    with pytest.raises(ConfigurationError, match="needs an allow-list"):
        AuthSettings(oidc=oidc).validate()
    with pytest.raises(ConfigurationError, match="needs an allow-list"):
        AuthSettings(trusted_header="X-Forwarded-Email").validate()
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        AuthSettings(tokens=("short",)).validate()
    with pytest.raises(ConfigurationError, match="needs GitHub sign-in"):
        AuthSettings(oidc=oidc, allow_orgs=frozenset({"acme"})).validate()
    with pytest.raises(ConfigurationError, match="not an IP address"):
        AuthSettings(tokens=(TOKEN,), trusted_proxies=("proxy.local",)).validate()


# ---- no auth: loopback only, still CSRF-protected ---------------------------------------------------
def test_no_auth_serves_loopback_names_only_with_security_headers(app: Celeriac) -> None:
    with client(app, AuthSettings()) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert who(page) == "- admin"
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert c.get("/static/dashboard.css").headers["x-content-type-options"] == "nosniff"
    # DNS rebinding: a name that resolves to 127.0.0.1 but is not ours
    with client(app, AuthSettings(), host="rebind.attacker.example:5555") as c:
        assert c.get("/").status_code == 421
        assert c.get("/api/overview").status_code == 421


def test_no_auth_still_refuses_a_forged_post(app: Celeriac) -> None:
    with client(app, AuthSettings()) as c:
        refused = c.post(ACTION, data={"x": "1"})
        assert refused.status_code == 403
        assert "CSRF" in refused.text
        assert c.post("/api" + ACTION).status_code == 403
        token = csrf(c)
        assert c.post(ACTION, data={"csrf_token": token}).status_code == 303
        assert c.post("/api" + ACTION, headers={"X-CSRF-Token": token}).json()["ok"] is True


def test_read_only_without_auth_refuses_actions(app: Celeriac) -> None:
    with client(app, AuthSettings(read_only=True)) as c:
        assert who(c.get("/")) == "- read"
        refused = c.post("/api" + ACTION, headers={"X-CSRF-Token": csrf(c)})
        assert refused.status_code == 403
        assert "needs the admin role" in refused.json()["error"]


# ---- tokens -----------------------------------------------------------------------------------------
def test_bearer_tokens_and_roles(app: Celeriac) -> None:
    settings = AuthSettings(tokens=(TOKEN,), read_tokens=(READ_TOKEN,))
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with client(app, settings, host="dash.example.com") as c:
        refused = c.get("/api/overview")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="celeriac dashboard"'
        assert (
            c.get("/api/overview", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
            == 401
        )
        assert c.get("/api/overview", headers=read).status_code == 200
        assert c.get("/healthz").status_code == 200  # open
        assert c.get("/metrics").status_code == 401  # same auth unless metrics_public
        assert c.get("/metrics", headers=read).status_code == 200
        # a read token cannot act; an admin token can, with no CSRF token (a browser never sends one)
        assert c.post("/api" + ACTION, headers=read).status_code == 403
        assert c.post("/api" + ACTION, headers=admin).json()["ok"] is True
    with client(app, AuthSettings(tokens=(TOKEN,), metrics_public=True), host="dash.example.com") as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/api/overview").status_code == 401


# ---- basic auth -------------------------------------------------------------------------------------
def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_roles_and_csrf(app: Celeriac) -> None:
    settings = AuthSettings(
        basic_users={"alice": PASSWORD_HASH, "bob": PASSWORD_HASH},
        admins=frozenset({"alice"}),
        secure_cookies=False,
    )
    alice = basic("alice", PASSWORD)
    with client(app, settings, host="dash.example.com") as c:
        challenge = c.get("/")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"].startswith("Basic ")
        assert c.get("/", headers=basic("alice", "wrong")).status_code == 401
        assert c.get("/", headers=basic("mallory", PASSWORD)).status_code == 401
        assert who(c.get("/", headers=alice)) == "alice admin"
        token = csrf(c, headers=alice)
        # basic credentials are sent by the browser on its own: a POST without the token is refused
        assert c.post(ACTION, headers=alice, data={}).status_code == 403
        assert c.post(ACTION, headers=alice, data={"csrf_token": "forged"}).status_code == 403
        assert c.post(ACTION, headers=alice, data={"csrf_token": token}).status_code == 303
        assert c.post(ACTION, headers={**alice, "X-CSRF-Token": token}).status_code == 303
        # from another site: refused even with the right token
        cross = {**alice, "Sec-Fetch-Site": "cross-site"}
        assert c.post(ACTION, headers=cross, data={"csrf_token": token}).status_code == 403
        foreign = {**alice, "Origin": "https://evil.example"}
        assert c.post(ACTION, headers=foreign, data={"csrf_token": token}).status_code == 403
        own = {**alice, "Origin": "http://dash.example.com", "Sec-Fetch-Site": "same-origin"}
        assert c.post(ACTION, headers=own, data={"csrf_token": token}).status_code == 303
    with client(app, settings, host="dash.example.com") as c:
        bob = basic("bob", PASSWORD)
        assert who(c.get("/", headers=bob)) == "bob read"
        refused = c.post("/api" + ACTION, headers={**bob, "X-CSRF-Token": csrf(c, headers=bob)})
        assert refused.status_code == 403
        assert "needs the admin role" in refused.json()["error"]


def test_basic_auth_hashes_once_per_user_not_per_request(
    app: Celeriac, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = AuthSettings.check_basic
    monkeypatch.setattr(AuthSettings, "check_basic", lambda self, u, p: calls.append(u) or real(self, u, p))
    settings = AuthSettings(basic_users={"alice": PASSWORD_HASH}, secure_cookies=False)
    with client(app, settings, host="dash.example.com") as c:
        for _ in range(5):
            assert c.get("/api/queues", headers=basic("alice", PASSWORD)).status_code == 200
        assert c.get("/api/queues", headers=basic("alice", "wrong")).status_code == 401
    assert calls == ["alice", "alice"]  # the right password verified once, the wrong one not cached


# ---- trusted header (oauth2-proxy) --------------------------------------------------------------------
def test_trusted_header_from_an_allowed_proxy_only(app: Celeriac) -> None:
    settings = AuthSettings(
        trusted_header="X-Forwarded-Email",
        trusted_proxies=("127.0.0.1",),
        allow_domains=frozenset({"example.com"}),
        admins=frozenset({"ops@example.com"}),
        secure_cookies=False,
    )
    asgi = dashboard(app, settings)
    with TestClient(asgi, base_url="http://dash.example.com", client=("127.0.0.1", 40000)) as c:
        assert who(c.get("/", headers={"X-Forwarded-Email": "ops@example.com"})) == "ops@example.com admin"
        assert who(c.get("/", headers={"X-Forwarded-Email": "dev@example.com"})) == "dev@example.com read"
        assert c.get("/", headers={"X-Forwarded-Email": "eve@evil.example"}).status_code == 401
        assert c.get("/").status_code == 401
    # the same header from an address that is not the proxy is not believed
    with TestClient(asgi, base_url="http://dash.example.com", client=("10.9.8.7", 40000)) as c:
        assert c.get("/", headers={"X-Forwarded-Email": "ops@example.com"}).status_code == 401


# ---- OIDC and GitHub, end to end against a local issuer --------------------------------------------
CLIENT_ID, CLIENT_SECRET = "celeriac-dashboard", "test-client-secret"


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider(
        CLIENT_ID,
        CLIENT_SECRET,
        [
            User("alice", "alice@example.com", orgs=["acme"]),
            User("bob", "bob@example.com"),
            User("carol", "carol@other.example", orgs=["acme"]),
            User("dave", "dave@example.com", email_verified=False),
            User("mallory", "mallory@evil.example", preferred_username="alice"),
        ],
    )
    port = free_port()
    p.issuer = f"http://127.0.0.1:{port}"
    with serve(p.app(), port=port):
        yield p


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def sign_in(dash: str, user: str, prefix: str = "") -> tuple[httpx.Client, httpx.Response]:
    """Walk the authorization code flow as a browser would; return the client and the last response.
    ``dash`` is the server's URL, ``prefix`` where the dashboard is mounted in it."""
    c = httpx.Client(follow_redirects=False, timeout=10)
    _clients.append(c)
    first = c.get(dash + prefix + "/tasks?state=FAILURE", headers={"Accept": "text/html"})
    assert first.status_code == 303
    assert first.headers["location"] == prefix + "/auth/login?next=%2Ftasks%3Fstate%3DFAILURE"
    to_issuer = c.get(dash + first.headers["location"])
    assert to_issuer.status_code == 302
    authorize = to_issuer.headers["location"]
    assert "code_challenge_method=S256" in authorize
    form_page = c.get(authorize)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form_page.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    back = c.post(authorize.split("?")[0], data={**fields, "username": user})
    assert back.status_code == 302, back.text
    assert back.headers["location"].startswith(dash + prefix + "/auth/callback?")
    return c, c.get(back.headers["location"])


def oidc_dashboard(provider: Provider, **kw: object) -> AuthSettings:
    return AuthSettings(
        oidc=OIDCSettings(CLIENT_ID, CLIENT_SECRET, issuer=provider.issuer),
        secure_cookies=False,  # httpx does not send a Secure cookie over http (Chromium does on 127.0.0.1)
        **kw,  # type: ignore[arg-type]
    )


def test_oidc_sign_in_end_to_end(app: Celeriac, provider: Provider) -> None:
    settings = oidc_dashboard(
        provider, allow_domains=frozenset({"example.com"}), admins=frozenset({"alice@example.com"})
    )
    with serve(dashboard(app, settings)) as dash:
        c, done = sign_in(dash, "alice")
        assert done.status_code == 303
        assert done.headers["location"] == "/tasks?state=FAILURE"  # back where the user was going
        page = c.get(dash + "/")
        assert page.status_code == 200
        assert who(page) == "alice@example.com admin"
        assert provider.token_requests == 1
        # the page's sign-out form carries the CSRF token
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert token == csrf(c, dash)
        assert c.post(dash + ACTION, data={"csrf_token": token}).status_code == 303
        assert c.post(dash + ACTION, data={}).status_code == 403
        # sign out (CSRF-checked), then the dashboard asks for a sign-in again
        assert c.post(dash + "/auth/logout", data={}).status_code == 403
        out = c.post(dash + "/auth/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert c.get(dash + "/", headers={"Accept": "text/html"}).status_code == 303
        assert c.get(dash + "/api/overview").status_code == 401

        c2, done2 = sign_in(dash, "bob")
        assert done2.status_code == 303
        assert who(c2.get(dash + "/")) == "bob@example.com read"


def test_oidc_refuses_users_outside_the_allow_list(app: Celeriac, provider: Provider) -> None:
    settings = oidc_dashboard(provider, allow_domains=frozenset({"example.com"}))
    with serve(dashboard(app, settings)) as dash:
        c, done = sign_in(dash, "carol")  # other.example
        assert done.status_code == 403
        assert c.get(dash + "/api/overview").status_code == 401
        c, done = sign_in(dash, "dave")  # e-mail not verified: its domain proves nothing
        assert done.status_code == 403


@pytest.mark.parametrize("tamper", ["nonce", "aud", "signature", "iss"])
def test_oidc_refuses_a_bad_id_token(app: Celeriac, provider: Provider, tamper: str) -> None:
    settings = oidc_dashboard(provider, allow_users=frozenset({"alice@example.com"}))
    with serve(dashboard(app, settings)) as dash:
        provider.tamper = tamper
        c, done = sign_in(dash, "alice")
        assert done.status_code == 400, (tamper, done.text)
        assert c.get(dash + "/api/overview").status_code == 401


def test_login_next_is_never_an_open_redirect(app: Celeriac, provider: Provider) -> None:
    settings = oidc_dashboard(provider, allow_users=frozenset({"alice@example.com"}))
    with serve(dashboard(app, settings)) as dash, httpx.Client(follow_redirects=True, timeout=10) as c:
        c.get(dash + "/auth/login?next=//evil.example/x")  # stops at the issuer's form
        # not signed in yet; the stored target was replaced by "/"
        for bad in ("//evil.example", "https://evil.example", "/\\evil.example"):
            c.get(dash + "/auth/login", params={"next": bad})
    from celeriac.dashboard.oidc import _safe_next

    assert _safe_next("//evil.example") == "/"
    assert _safe_next("https://evil.example") == "/"
    assert _safe_next("/\\evil") == "/"
    assert _safe_next("/tasks?x=1") == "/tasks?x=1"


def test_github_sign_in_with_an_organisation_allow_list(app: Celeriac, provider: Provider) -> None:
    settings = AuthSettings(
        oidc=OIDCSettings(
            CLIENT_ID,
            CLIENT_SECRET,
            provider="github",
            github_url=provider.issuer,
            github_api_url=provider.issuer + "/api",
        ),
        allow_orgs=frozenset({"acme"}),
        admins=frozenset({"carol"}),
        secure_cookies=False,
    )
    with serve(dashboard(app, settings)) as dash:
        c, done = sign_in(dash, "carol")
        assert done.status_code == 303, done.text
        assert who(c.get(dash + "/")) == "carol admin"
        c, done = sign_in(dash, "alice")
        assert done.status_code == 303
        assert who(c.get(dash + "/")) == "alice read"
        c, done = sign_in(dash, "bob")  # not in acme
        assert done.status_code == 403


def test_oidc_sign_in_when_mounted_under_a_prefix(app: Celeriac, provider: Provider) -> None:
    """Inside another ASGI app at /ops/celeriac: redirects, the callback and links keep the prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    settings = oidc_dashboard(provider, allow_users=frozenset({"alice@example.com"}))
    host = Starlette(routes=[Mount("/ops/celeriac", app=dashboard(app, settings))])
    with serve(host) as url:
        c, done = sign_in(url, "alice", prefix="/ops/celeriac")
        assert done.status_code == 303
        assert done.headers["location"] == "/ops/celeriac/tasks?state=FAILURE"
        page = c.get(url + "/ops/celeriac/")
        assert who(page) == "alice@example.com admin"
        assert 'action="/ops/celeriac/auth/logout"' in page.text
        token = csrf(c, url + "/ops/celeriac")
        assert c.post(url + "/ops/celeriac" + ACTION, data={"csrf_token": token}).status_code == 303


def test_oidc_allow_list_ignores_a_chosen_preferred_username(app: Celeriac, provider: Provider) -> None:
    """preferred_username is not unique nor stable in OIDC: allow-lists match the verified e-mail or
    the sub claim, so a user who calls themselves "alice" is not alice."""
    settings = oidc_dashboard(provider, allow_users=frozenset({"alice", "alice@example.com"}))
    with serve(dashboard(app, settings)) as dash:
        _, done = sign_in(dash, "mallory")
        assert done.status_code == 403
        c, done = sign_in(dash, "alice")
        assert done.status_code == 303
        assert who(c.get(dash + "/")) == "alice@example.com admin"
    by_sub = oidc_dashboard(provider, allow_users=frozenset({"user-mallory"}))
    with serve(dashboard(app, by_sub)) as dash:
        c, done = sign_in(dash, "mallory")
        assert done.status_code == 303
        assert who(c.get(dash + "/")) == "mallory@evil.example admin"  # let in by its sub
