"""Issue 12: a task that expires while it waits behind a rate or concurrency limit is REVOKED with a
reason (Celery's state for expired tasks), never run late; other expired tasks keep EXPIRED. Both
send Celery's ``task_revoked`` signal with ``expired=True``. With a fake clock: no waiting."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celeriac, TaskState
from celeriac.exceptions import TaskExpiredError, TaskRevokedError
from celeriac.execution import Execution, Outcome
from celeriac.flow.gate import PARKED, RESERVED
from celeriac.message import Message
from celeriac.record import decode_record
from celeriac.result import rebuild_exception
from celeriac.signals import task_revoked
from celeriac.testing import FakeClock


@pytest.fixture
def app() -> Any:
    app = Celeriac("expiry", broker="memory://", clock=FakeClock(1_000_000.0))

    @app.task(name="expiry.limited", rate_limit="1/s", max_concurrency=1, ignore_result=False)
    def limited(x: int) -> int:
        return x

    yield app
    app.close()


def _prepare(app: Celeriac, extra: dict[str, Any]) -> Outcome:
    now_ms = int(app.clock.time() * 1000)
    message = Message(id="t1", task="expiry.limited", args=(1,), expires_ms=now_ms - 1, extra=extra)
    out = Execution(app).prepare(app.codec.encode(message), queue="default")
    assert isinstance(out, Outcome)
    return out


@pytest.mark.parametrize(
    ("mark", "why"),
    [
        (RESERVED, "expired while waiting for its turn under a rate limit"),
        (PARKED, "expired while waiting for a slot under max_concurrency"),
    ],
)
def test_expired_behind_a_limit_is_revoked_with_a_reason(app: Celeriac, mark: str, why: str) -> None:
    seen: list[dict[str, Any]] = []

    def on_revoked(sender: Any = None, **kwargs: Any) -> None:
        seen.append(kwargs)

    task_revoked.connect(on_revoked)
    try:
        out = _prepare(app, {mark: 1})
    finally:
        task_revoked.disconnect(on_revoked)
    assert out.state is TaskState.REVOKED and out.kind == "ack"
    assert out.reason == why
    assert isinstance(out.exc, TaskExpiredError) and isinstance(out.exc, TaskRevokedError)
    assert seen and seen[0]["expired"] is True and seen[0]["terminated"] is False
    assert out.store is not None
    record = decode_record("t1", out.store.payload)
    assert record.state is TaskState.REVOKED
    exc = rebuild_exception(record)
    assert isinstance(exc, TaskExpiredError) and why in str(exc)


def test_expired_without_waiting_behind_a_limit_keeps_expired(app: Celeriac) -> None:
    out = _prepare(app, {})
    assert out.state is TaskState.EXPIRED
    assert isinstance(out.exc, TaskExpiredError)


def test_the_rate_limiter_refusal_is_revoked_with_its_reason(app: Celeriac) -> None:
    """The gate's answer when a task's turn would come after its expiry (never parked at all)."""
    from celeriac.worker.flow import revoked

    message = Message(id="t2", task="expiry.limited", args=(1,), expires_ms=None)
    job = Execution(app).prepare(app.codec.encode(message), queue="default")
    assert not isinstance(job, Outcome)
    out = revoked(Execution(app), job, "before its turn under rate limit 1/s of expiry.limited")  # type: ignore[arg-type]
    assert out.state is TaskState.REVOKED
    assert out.reason == "expired before its turn under rate limit 1/s of expiry.limited"
    assert isinstance(out.exc, TaskExpiredError)
