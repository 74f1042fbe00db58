"""The deliveries a worker took and has not finished with: one home for the in-flight invariant.

A delivery is *owned* from the fetch (or reclaim) that gave it to this worker until its outcome is
recorded (settled), it is handed back (released), or it was acked before its task ran
(at-most-once). While it is owned, the lease loop renews its lease. Each owned delivery is, at every
moment, in exactly one of these places:

* a slot runs it (an asyncio task of the worker, or a future for a call without one: :attr:`Slot.run`);
* its outcome was submitted to the settler (:attr:`Slot.settling`), which acks or fences it;
* it is being handed back (dropped from here first).

**The invariant**: a delivery that no slot runs and that nothing settles must never keep its lease,
or it would stay owned by a live worker forever (renewed, never run, never handed back).
:meth:`Inflight.orphans` finds any such delivery, whatever bug produced it; the worker checks on
every lease renewal and hands orphans back instead of renewing them (see ``worker.py``).

Runs of deliveries acked before their task started (at-most-once) still occupy a slot but are no
longer owned: nothing renews or hands them back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from ..broker.base import Delivery

__all__ = ["Inflight", "Key", "Slot"]

#: a delivery's identity: ``(queue, entry id)``
Key = tuple[str, str]


def key_of(d: Delivery) -> Key:
    return (d.queue, d.entry_id)


class Slot:
    """One delivery this worker took (see the module docstring)."""

    __slots__ = ("delivery", "flushing", "owned", "run", "settling", "started_s")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        #: the worker's task running it while a slot runs it (a plain future for a sync call started
        #: without a coroutine: ``Worker._start_call``), done when its run ends
        self.run: asyncio.Future[None] | None = None
        #: its lease is this worker's (False once acked before its task ran: at-most-once)
        self.owned = True
        #: its outcome is with the settler, which acks (or fences) it
        self.settling = False
        #: an ack of it is on its way to Redis: a lease renewal racing it may find it acked already
        self.flushing = False
        #: when a slot started running it (epoch s; ``celeriac inspect active``)
        self.started_s = 0.0


class Inflight:
    """Owned and running deliveries of one worker (see the module docstring)."""

    def __init__(self) -> None:
        self._slots: dict[Key, Slot] = {}
        self._running = 0

    # ---- counts ------------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        """Deliveries a slot runs (the worker's busy slots)."""
        return self._running

    def __bool__(self) -> bool:
        """Anything taken and not finished with."""
        return bool(self._slots)

    def __len__(self) -> int:
        """Deliveries taken and not finished with (running, waiting for a slot, settling)."""
        return len(self._slots)

    def owns(self, key: Key) -> bool:
        slot = self._slots.get(key)
        return slot is not None and slot.owned

    def owned(self) -> list[Delivery]:
        """The deliveries whose leases this worker renews."""
        return [s.delivery for s in self._slots.values() if s.owned]

    def running_runs(self) -> list[tuple[Key, Delivery, asyncio.Future[None]]]:
        """``(key, delivery, the task running it)`` of each running delivery (revoke with terminate)."""
        return [(k, s.delivery, s.run) for k, s in self._slots.items() if s.run is not None]

    def runs(self) -> list[asyncio.Future[None]]:
        """The worker's tasks running deliveries."""
        return [s.run for s in self._slots.values() if s.run is not None]

    def running_slots(self) -> list[Slot]:
        """The slots running a delivery (``celeriac inspect active``)."""
        return [s for s in self._slots.values() if s.run is not None]

    def running_deliveries(self) -> list[Delivery]:
        """The deliveries a slot runs now (the heartbeat lists their tasks)."""
        return [s.delivery for s in self._slots.values() if s.run is not None]

    def flushing(self, key: Key) -> bool:
        """An ack of this delivery is on its way to Redis."""
        slot = self._slots.get(key)
        return slot is not None and slot.flushing

    # ---- the lifecycle -----------------------------------------------------------------------------
    def take(self, d: Delivery) -> Slot:
        """A fetch or reclaim gave ``d`` to this worker: owned from now on."""
        slot = self._slots[(d.queue, d.entry_id)] = Slot(d)  # key_of(d), inlined: per task
        return slot

    def start(self, slot: Slot, run: asyncio.Future[None]) -> None:
        """A slot runs it."""
        slot.run = run
        slot.started_s = time.time()
        self._running += 1

    def acked_early(self, slot: Slot) -> None:
        """Acked before its task ran (at-most-once): its lease is no longer this worker's."""
        slot.owned = False

    def run_ended(self, slot: Slot) -> bool:
        """Its run ended (with or without an outcome). False when shutdown had taken the run over
        (:meth:`interrupt`): shutdown then hands it back."""
        if slot.run is None:
            return False
        slot.run = None
        self._running -= 1
        if not slot.owned:  # acked before it ran: nothing is left to track
            d = slot.delivery
            self._slots.pop((d.queue, d.entry_id), None)
        return True

    def settling(self, d: Delivery) -> None:
        """Its outcome was submitted to the settler."""
        slot = self._slots.get((d.queue, d.entry_id))  # key_of(d), inlined: per task
        if slot is not None:
            slot.settling = True

    def flush(self, keys: Iterable[Key], on: bool) -> None:
        """Mark (``on``) or unmark acks on their way to Redis."""
        for key in keys:
            slot = self._slots.get(key)
            if slot is not None:
                slot.flushing = on

    def drop(self, d: Delivery) -> None:
        """Settled or handed back: no longer this worker's."""
        self._slots.pop((d.queue, d.entry_id), None)  # key_of(d), inlined: per task

    # ---- shutdown and the invariant --------------------------------------------------------------
    def interrupt(self) -> list[tuple[Delivery, asyncio.Future[None]]]:
        """Shutdown takes every running delivery over (to cancel its run and hand it back); they are
        no longer tracked here."""
        taken: list[tuple[Delivery, asyncio.Future[None]]] = []
        for key, slot in list(self._slots.items()):
            if slot.run is not None:
                taken.append((slot.delivery, slot.run))
                slot.run = None  # its run's end (run_ended) now leaves it to shutdown
                del self._slots[key]
        self._running = 0
        return taken

    def orphans(self) -> list[Delivery]:
        """Owned deliveries that no slot runs and that nothing settles: they must be handed back
        (their leases must not be renewed). Always empty unless something went wrong."""
        return [
            s.delivery
            for s in self._slots.values()
            if s.owned and not s.settling and (s.run is None or s.run.done())
        ]
