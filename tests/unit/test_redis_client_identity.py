"""celeriac's Redis clients give redis-py its version for ``CLIENT SETINFO`` (celeriac._redis.client):
the connections carry the identity redis-py would send by itself, and making them never asks
``importlib.metadata`` (whose first ask scans ``sys.path``: about 0.8 MiB of an idle worker's RSS).
No server needed: connections are made, not connected."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
import redis
import redis.utils

from celeriac._redis.client import async_client, sync_client

driver_info = pytest.importorskip("redis.driver_info", reason="a redis-py without driver_info")

URL = "redis://127.0.0.1:1/0"


def test_connections_carry_redis_pys_own_identity_without_reading_package_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain: Any = redis.Redis.from_url(URL).connection_pool.make_connection()
    default = plain.driver_info  # what redis-py sends by itself
    assert default is not None

    def no_metadata(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("importlib.metadata was asked for redis-py's version")

    monkeypatch.setattr(importlib.metadata, "version", no_metadata)
    monkeypatch.setattr(redis.utils, "get_lib_version", no_metadata)
    made: list[Any] = [
        sync_client(URL).connection_pool.make_connection(),
        sync_client(URL, max_connections=None).connection_pool.make_connection(),
        async_client(URL, max_connections=1).connection_pool.make_connection(),
    ]
    for conn in made:
        info = conn.driver_info
        assert isinstance(info, driver_info.DriverInfo)
        assert (info.formatted_name, info.lib_version) == (default.formatted_name, default.lib_version)
        assert info.lib_version == redis.__version__
