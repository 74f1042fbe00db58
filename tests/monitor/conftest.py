"""Fixtures of the monitoring tests: an app on the session's private Redis, a worker in a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from celeriac import Celeriac


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("mon", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()
