"""Fixtures of the monitoring tests: an app on the session's private Redis, a worker in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from celeriac import Celeriac
from celeriac.testing import ThreadWorker


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


@pytest.fixture
def thread_worker() -> Iterator[Callable[..., ThreadWorker]]:
    started: list[ThreadWorker] = []

    def start(app: Celeriac, **options: Any) -> ThreadWorker:
        w = ThreadWorker(app, **options).start()
        started.append(w)
        return w

    yield start
    for w in started:
        if w.thread.is_alive():
            w.stop(cold=True)
