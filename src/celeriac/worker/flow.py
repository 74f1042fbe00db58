"""The worker's hooks into flow control (``celeriac.flow``) and periodic tasks (``celeriac.beat``).

Kept here so that the worker's own module holds only a few lines for each: build the gate or the
scheduler.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..beat import Scheduler
    from ..broker.base import Broker, Delivery
    from ..execution import Execution, Job, Outcome
    from ..flow.gate import Gate


def flow_gate(app: Celeriac, broker: Broker, lease_ms: int) -> Gate | None:
    """The worker's flow-control gate (None without Redis: the memory broker has no limits)."""
    from ..broker.redis import RedisBroker

    if not isinstance(broker, RedisBroker):
        return None
    from ..flow.gate import Gate

    return Gate(
        app, broker.url, broker.keys.prefix, lease_ms, clock=app.clock.time, client=broker.shared_async()
    )


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
    state REVOKED with the reason, stored like any failure, never run late (``Execution.expired``)."""
    return executor.expired(job.message, job.task, job.request.queue, why=reason)


def expired_behind_limit(
    gate: Gate | None, d: Delivery, outcome: Outcome
) -> Coroutine[Any, Any, None] | None:
    """For a message dropped unstarted (expired, revoked) after it waited behind a limit: the coroutine
    that gives back what it held there now (the free slot a concurrency limit moved it into, rather
    than after its lease; its turn in a rate limiter's line); None for any other outcome."""
    from ..flow.gate import PARKED, TURN
    from ..states import TaskState

    message = outcome.message
    if gate is None or outcome.state is not TaskState.REVOKED or message is None or not message.extra:
        return None
    if PARKED not in message.extra and TURN not in message.extra:
        return None
    return _give_back(gate, d, message)


async def _give_back(gate: Gate, d: Delivery, message: Any) -> None:
    from ..exceptions import BrokerError
    from ..flow.gate import PARKED, TURN

    try:
        if PARKED in message.extra:
            await gate.expired_in_slot(d, message)
        if TURN in message.extra:
            await gate.forget_turn(d, message)
    except BrokerError:
        pass  # the slot frees when its lease expires; the turn is dropped as lost later
