"""``celeriac dashboard`` sign-in flags and ``celeriac dashboard-password``, as a user types them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from celeriac.cli import main
from celeriac.cli.dashboard_auth import settings_from_options
from celeriac.dashboard.auth import verify_password


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_non_loopback_without_auth_is_refused_with_a_clear_error(redis_url: str) -> None:
    code, _, err = run("dashboard", "--broker", redis_url, "--address", "0.0.0.0", "--port", "0")
    assert code == 2  # a usage error
    assert "Traceback" not in err
    assert "refusing to serve the dashboard on 0.0.0.0 without authentication" in err
    assert "--token, --basic-auth, --oidc-issuer" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--token", "short"], "at least 16 characters"),
        (["--basic-auth", "alice:hunter2"], "give a password hash, not a password"),
        (
            ["--oidc-issuer", "https://id.example", "--oidc-client-id", "x", "--oidc-client-secret", "y"],
            "needs an allow-list",
        ),
        (["--trusted-header", "X-Forwarded-User"], "needs an allow-list"),
        (
            [
                "--allow-org",
                "acme",
                "--oidc-issuer",
                "https://id.example",
                "--oidc-client-id",
                "x",
                "--oidc-client-secret",
                "y",
            ],
            "needs GitHub sign-in",
        ),
    ],
)
def test_bad_auth_flags_are_clear_errors(redis_url: str, args: list[str], expected: str) -> None:
    code, _, err = run("dashboard", "--broker", redis_url, *args)
    assert code == 1
    assert expected in err


def test_dashboard_password_prints_a_usable_hash() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac.cli",
            "dashboard-password",
            "--user",
            "alice",
            "--password",
            "pw one",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    user, _, stored = proc.stdout.strip().partition(":")
    assert user == "alice"
    assert verify_password("pw one", stored)
    assert not verify_password("pw two", stored)


def test_secrets_from_the_environment(redis_url: str) -> None:
    env = {"CELERIAC_BROKER_URL": redis_url, "CELERIAC_DASHBOARD_TOKEN": "tok-aaaaaaaaaaaaaaaa short"}
    code, _, err = run("dashboard", "--address", "0.0.0.0", env=env)
    assert code == 1
    assert "at least 16 characters" in err  # the second of two space-separated tokens


def test_settings_from_options() -> None:
    options = {
        "token": ("tok-aaaaaaaaaaaaaaaa tok-bbbbbbbbbbbbbbbb",),
        "read_token": (),
        "basic_auth": (),
        "oidc_issuer": "https://id.example",
        "oidc_client_id": "client",
        "oidc_client_secret": "secret",
        "github": False,
        "github_url": "https://github.com",
        "github_api_url": "https://api.github.com",
        "trusted_header": None,
        "trusted_proxy": (),
        "allow_user": (),
        "allow_domain": ("example.com other.example",),
        "allow_org": (),
        "admin": ("ops@example.com",),
        "read_only": False,
        "secret_key": "k" * 32,
        "insecure_cookies": False,
        "metrics_public": False,
    }
    settings = settings_from_options(options)
    assert options == {}
    assert settings.tokens == ("tok-aaaaaaaaaaaaaaaa", "tok-bbbbbbbbbbbbbbbb")
    assert settings.allow_domains == {"example.com", "other.example"}
    assert settings.oidc is not None and settings.oidc.issuer == "https://id.example"
    assert settings.enabled


def test_help_names_the_environment_variables() -> None:
    code, out, _ = run("dashboard", "--help")
    assert code == 0
    assert "CELERIAC_DASHBOARD_TOKEN" in out
    assert "CELERIAC_DASHBOARD_OIDC_CLIENT_SECRET" in out
