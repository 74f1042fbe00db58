"""The worker's hooks into flow control (``celeriac.flow``) and periodic tasks (``celeriac.beat``).

Kept here so that the worker's own module holds only a few lines for each: build the gate or the
scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..beat import Scheduler
    from ..broker.base import Broker
    from ..execution import Execution, Job, Outcome
    from ..flow.gate import Gate


def flow_gate(app: Celeriac, broker: Broker, lease_ms: int) -> Gate | None:
    """The worker's flow-control gate (None without Redis: the memory broker has no limits)."""
    from ..broker.redis import RedisBroker

    if not isinstance(broker, RedisBroker):
        return None
    from ..flow.gate import Gate

    return Gate(app, broker.url, broker.keys.prefix, lease_ms, clock=app.clock.time)


def beat_scheduler(app: Celeriac) -> Scheduler:
    """An embedded scheduler (``-B``), its ``beat_schedule`` checked now.

    Raises:
        ConfigurationError: an invalid entry, naming it.
    """
    from ..beat import Scheduler
    from ..beat.entries import configured_entries

    configured_entries(app)
    return Scheduler(app)


def revoked(executor: Execution, job: Job, reason: str) -> Outcome:
    """The outcome of a job dropped unstarted (its turn under a limit came after its ``expires``):
    state REVOKED with the reason, stored like any failure, never run late."""
    from ..exceptions import TaskRevokedError
    from ..states import TaskState

    return executor._failed(
        job.message, job.task, TaskRevokedError(reason), kind="ack", reason=reason, state=TaskState.REVOKED
    )
