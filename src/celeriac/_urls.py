"""Redis URLs: validation and password redaction, without importing redis-py.

The configuration checks URLs when a setting is set, and every log line and error redacts them; both
happen in processes that never open a connection (a producer that is only being configured, the
process pool's children), so they must not pay for importing the Redis client.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

from .exceptions import ConfigurationError

_SCHEMES = ("redis", "rediss", "unix")


# userinfo of a URL: everything between "scheme://user:" and the LAST "@" of the same token, so that
# a password holding an unescaped "@", "/" or ":" is hidden whole (hiding too much is the safe side)
# (except the placeholder "<password>" of a hint showing the URL's form)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*):(?!<password>@)\S*@")
# query parameters that carry secrets (?password=..., ?ssl_password=...)
_SECRET_QUERY = re.compile(r"(?i)(?P<head>[?&][a-z_]*password=)[^&#\s'\"]*")


def redact(url: str) -> str:
    """``url`` (or any text holding URLs) with passwords replaced by ``***``: the password of the
    userinfo part and ``password``/``ssl_password`` query parameters. For logs, CLI output and errors."""
    return _SECRET_QUERY.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>:***@", url))


def has_password(url: str) -> bool:
    """True when ``url`` carries a password (in its user info or as a ``password=`` query option)."""
    try:
        parts = urlsplit(url)
        return bool(parts.password) or bool(parse_qs(parts.query).get("password"))
    except ValueError:
        return True  # not parsed: do not claim it has none


# URL query options celeriac passes on to redis-py (others would reach the connection class as
# unexpected arguments, or override the timeouts celeriac's blocking reads depend on)
URL_OPTIONS = frozenset({"db", "username", "password", "client_name"})
TLS_URL_OPTIONS = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ciphers",
    }
)
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("none", "optional", "required")


def check_url(url: str, setting: str = "broker") -> None:
    """Raise ConfigurationError unless ``url`` is a Redis URL celeriac can use.

    Query options are limited to ``db``, ``username``, ``password``, ``client_name`` and, for
    ``rediss://``, the TLS options of :data:`TLS_URL_OPTIONS`; the files they name must exist.
    """
    shown = redact(url)
    from ._topology import kind_of, parse

    if kind_of(url) != "single":
        if kind_of(url) == "sentinel" and url.lower().startswith("sentinel://"):
            return  # Celery's form: the master's name comes with broker_transport_options, checked on use
        try:
            parse(url)
        except ValueError as exc:
            raise ConfigurationError(setting, f"{shown!r}: {exc}") from None
        return
    if _unencoded_userinfo(url):
        raise ConfigurationError(
            setting,
            f"the password (or user name) in {shown!r} holds a '/', '?' or '#' that is not "
            "percent-encoded, so the URL cannot be split into password, host and database: "
            "percent-encode the password ('/' -> %2F, '@' -> %40, '?' -> %3F, '#' -> %23, ':' -> %3A, "
            "'%' -> %25; in Python: urllib.parse.quote(password, safe=''))",
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(setting, f"not a valid URL: {shown!r}") from None
    try:
        _ = parts.port
    except ValueError:  # the error text may quote part of a password that holds a ":" or "/"
        raise ConfigurationError(
            setting,
            f"not a valid URL: {shown!r} (the port is not a number; percent-encode special "
            "characters of a password)",
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            setting,
            f"unsupported scheme in {shown!r}: use redis://, rediss:// or unix:// (or memory://), "
            "redis+cluster://h1:p1,h2:p2 for a Redis Cluster, sentinel://h1:p1;sentinel://h2:p2 or "
            "redis+sentinel://h1:p1,h2:p2/<master>/<db> for Sentinel",
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(setting, f"no host in {shown!r}")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(setting, f"database must be a number in {shown!r}")
    _check_query(parts.scheme, parse_qs(parts.query, keep_blank_values=True), shown, setting)


def _unencoded_userinfo(url: str) -> bool:
    """True when an "@" follows the first "/", "?" or "#" after ``scheme://``: the URL's user info
    (its password, usually) holds one of those characters unescaped, and every URL parser then cuts
    the password there and reads the rest as host, database or query. ("@" alone is parsed right:
    the last one ends the user info.)"""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return False
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=-1)
    return cut >= 0 and "@" in rest[cut:]


def _check_query(scheme: str, query: dict[str, list[str]], shown: str, setting: str) -> None:
    allowed = URL_OPTIONS | (TLS_URL_OPTIONS if scheme == "rediss" else frozenset())
    for name, values in query.items():
        if name not in allowed:
            hint = (
                " (TLS options need a rediss:// URL)"
                if name in TLS_URL_OPTIONS
                else f"; known: {', '.join(sorted(allowed))}"
            )
            raise ConfigurationError(setting, f"unknown URL option {name!r} in {shown!r}{hint}")
        value = values[-1]
        if name in _TLS_FILES and not os.path.isfile(value):
            raise ConfigurationError(setting, f"{name}: no such file {value!r}")
        if name == "ssl_ca_path" and not os.path.isdir(value):
            raise ConfigurationError(setting, f"ssl_ca_path: no such directory {value!r}")
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            raise ConfigurationError(setting, f"ssl_cert_reqs must be one of {_CERT_REQS}, got {value!r}")
        if name == "ssl_check_hostname" and value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigurationError(setting, f"ssl_check_hostname must be true or false, got {value!r}")
        if name == "db" and not value.isdigit():
            raise ConfigurationError(setting, f"db must be a number in {shown!r}")
