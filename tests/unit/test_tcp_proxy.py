"""celeriac.testing.TcpProxy: forwards to Redis, cuts (blackhole or refuse) and heals."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from celeriac.testing import TcpProxy

pytestmark = pytest.mark.redis


def client(url: str, timeout_s: float = 0.3) -> redis.Redis:
    # no retries: each call shows what the link does right now
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False, retry=None
    )


def test_forwards_and_keeps_the_url_of_the_server(redis_url: str) -> None:
    with TcpProxy.for_url(redis_url) as proxy:
        assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
        c = client(proxy.url)
        c.set("k", b"v" * 200_000)  # larger than one chunk, both ways
        assert c.get("k") == b"v" * 200_000
        assert proxy.connections == 1
        c.close()


def test_cut_drops_live_connections_and_blackholes_new_ones_until_healed(redis_url: str) -> None:
    with TcpProxy.for_url(redis_url) as proxy:
        live = client(proxy.url)
        assert live.ping()
        before = socket.create_connection((proxy.host, proxy.port), timeout=5)
        before.sendall(b"PING\r\n")
        assert before.recv(10) == b"+PONG\r\n"
        proxy.cut()
        assert proxy.connections == 0
        assert before.recv(10) == b""  # dropped: closed under the client
        before.close()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            live.ping()  # dropped; redis-py's reconnection lands in the blackhole
        fresh = client(proxy.url)
        start = time.monotonic()
        with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
            fresh.ping()  # accepted, never answered: only the client's timeout ends the wait
        assert time.monotonic() - start >= 0.25
        # a raw socket shows the blackhole: connected, and nothing comes back until the heal closes it
        raw = socket.create_connection((proxy.host, proxy.port), timeout=5)
        raw.sendall(b"PING\r\n")
        raw.settimeout(0.1)
        with pytest.raises(socket.timeout):
            raw.recv(10)
        raw.settimeout(5)
        proxy.heal()
        assert raw.recv(10) == b""  # closed by the heal: its request was swallowed
        raw.close()
        assert client(proxy.url).ping()
        assert live.ping()  # redis-py reconnects on the next command
        live.close()
        fresh.close()


def test_cut_refuse_resets_new_connections_at_once(redis_url: str) -> None:
    with TcpProxy.for_url(redis_url) as proxy:
        proxy.cut(refuse=True)
        c = client(proxy.url, timeout_s=5)
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            c.ping()
        assert time.monotonic() - start < 2
        proxy.heal()
        assert c.ping()
        c.close()
