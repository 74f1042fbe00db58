"""Task control on the in-memory broker (same semantics as Redis) and in eager mode."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celeriac, TaskRevokedError, TaskState
from celeriac.broker.memory import MemoryBroker
from celeriac.broker.revoked import Revocation, RevokedMirror
from celeriac.task import unique_digest
from celeriac.testing import drain


@pytest.fixture
def app() -> Celeriac:
    return Celeriac("mem", broker="memory://")


def test_revoke_before_the_worker(app: Celeriac) -> None:
    ran: list[int] = []

    @app.task(ignore_result=False)
    def t(x: int) -> int:
        ran.append(x)
        return x

    a, b = t.delay(1), t.delay(2)
    a.revoke()
    assert app.AsyncResult(a.id).state == TaskState.REVOKED
    drain(app, raise_first_failure=False)
    assert ran == [2] and b.get(timeout=1) == 2
    with pytest.raises(TaskRevokedError):
        a.get(timeout=1)


def test_unique_and_priority(app: Celeriac) -> None:
    order: list[str] = []

    @app.task(unique_for=60)
    def u(x: int) -> None:
        order.append(f"u{x}")

    @app.task
    def p(tag: str) -> None:
        order.append(tag)

    first = u.delay(1)
    assert u.delay(1).id == first.id
    broker = app.broker
    assert isinstance(broker, MemoryBroker)
    assert broker.unique_holder("default", unique_digest(u.name, (1,), {})) == first.id
    p.apply_async(("low",), priority=9)
    p.apply_async(("high",), priority=0)
    p.apply_async(("mid",), priority=4)
    assert broker.stats("default").ready == 4
    drain(app, concurrency=1)
    assert order == ["u1", "high", "mid", "low"]
    assert broker.unique_holder("default", unique_digest(u.name, (1,), {})) is None
    assert u.delay(1).id != first.id


def test_progress_on_the_memory_backend(app: Celeriac) -> None:
    seen: list[Any] = []

    @app.task(bind=True)
    def t(self: Any) -> int:
        self.update_state(state="PROGRESS", meta={"i": 1})
        seen.append((app.AsyncResult(self.request.id).state, app.AsyncResult(self.request.id).info))
        return 1

    r = t.apply_async(ignore_result=False)
    drain(app)
    assert seen == [("PROGRESS", {"i": 1})]
    assert r.get(timeout=1) == 1 and r.state == TaskState.SUCCESS


def test_eager_mode_ignores_unique_and_priority(redis_free_app: Celeriac) -> None:
    app = redis_free_app

    @app.task(unique_for=60, priority=5)
    def t(x: int) -> int:
        return x

    assert t.delay(1).get() == 1
    assert t.delay(1).get() == 1  # runs again: no lock in eager mode


@pytest.fixture
def redis_free_app() -> Celeriac:
    return Celeriac("eager", broker="memory://", task_always_eager=True)


def test_mirror_expires_by_age_and_is_bounded() -> None:
    mirror = RevokedMirror(ttl_ms=1000, max_entries=3)
    for i in range(5):
        mirror.add(Revocation(f"t{i}", 100 * i, terminate=i == 4))
    assert len(mirror) == 3 and "t0" not in mirror and "t4" in mirror
    assert [r.task_id for r in mirror.terminations] == ["t4"]
    mirror.expire(1250)  # older than the TTL at 1250 ms: t2 (200) goes, t3 (300) stays
    assert "t2" not in mirror and "t3" in mirror


def test_unique_digest_is_canonical() -> None:
    assert unique_digest("t", (1,), {"a": 1, "b": 2}) == unique_digest("t", [1], {"b": 2, "a": 1})
    assert unique_digest("t", (1,), {}) != unique_digest("t", (1.0,), {})
    assert unique_digest("t", (1,), {}) != unique_digest("u", (1,), {})
