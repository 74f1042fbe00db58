"""The worker's hooks into flow control (``celeriac.flow``) and periodic tasks (``celeriac.beat``).

Kept here so that the worker's own module holds only a few lines for each: build the gate or the
scheduler, and turn a deferral into an outcome the settle loop records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..states import TaskState
from .executor import Job, Outcome

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..beat import Scheduler
    from ..broker.base import Broker
    from ..flow.gate import Admission, Gate

#: reasons of deferrals start with this (the settle loop counts them apart from retries)
DEFERRED = "deferred: "


def flow_gate(app: Celeriac, broker: Broker, lease_ms: int) -> Gate | None:
    """The worker's flow-control gate (None without Redis: the memory broker has no limits)."""
    from ..broker.redis import RedisBroker

    if not isinstance(broker, RedisBroker):
        return None
    from ..flow.gate import Gate

    return Gate(app, broker.url, broker.keys.prefix, lease_ms)


def beat_scheduler(app: Celeriac) -> Scheduler:
    """An embedded scheduler (``-B``), its ``beat_schedule`` checked now.

    Raises:
        ConfigurationError: an invalid entry, naming it.
    """
    from ..beat import Scheduler
    from ..beat.entries import configured_entries

    configured_entries(app)
    return Scheduler(app)


def deferral(job: Job, admission: Admission) -> Outcome:
    """Ack the delivery and park the (marked) message until its reserved start time; no retry is
    counted (``retries`` is unchanged)."""
    return Outcome(
        "retry",
        job.message.id,
        job.message.task,
        TaskState.PENDING,
        retry_data=admission.data,
        eta_ms=admission.eta_ms,
        reason=DEFERRED + admission.reason,
    )


def is_deferral(outcome: Outcome) -> bool:
    return outcome.kind == "retry" and outcome.reason.startswith(DEFERRED)
