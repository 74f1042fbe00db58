"""Recording outcomes: results first, then acks, retries and dead letters, in batches.

Group commit: the first outcome starts a flush at once; outcomes that finish during that flush form
the next batch. So batching adds no latency when idle and saves round trips when busy. A flush that
fails keeps its batch for the next attempt (the worker's guard backs off), and the deliveries stay
owned (their leases renewed) until it succeeds.

Results are fenced like acks: a worker writes neither the ack nor the result of a delivery it no
longer owns (its lease expired while it was cut off or frozen, and another worker took the message
over), so a late worker cannot overwrite the owner's result. Results on the broker's own Redis travel
inside ``settle.lua``, written only for owned deliveries, in the one round trip of the acks. A separate
result store cannot be written atomically with the acks: the flush first renews the leases of the
deliveries whose results it writes (``extend.lua`` reports those no longer owned), writes the results
of the owned ones, then settles. The renewal gives the write a whole lease to land before anyone can
take the delivery over. With results off, a flush is one round trip either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..broker.base import Delivery, ResultSettling, Settlement
from ..exceptions import BrokerFullError
from ..states import TaskState
from .executor import Outcome

if TYPE_CHECKING:
    from ..broker.base import Broker
    from ..monitor.recorder import Recorder
    from ..outcomes import OutcomeReporter
    from ..record import ResultWrite
    from ..results.base import ResultBackend
    from .inflight import Inflight
    from .stats import WorkerStats

logger = logging.getLogger(__name__)

_SUCCESS = TaskState.SUCCESS


class Settler:
    """Records the outcomes a worker submits (see the module docstring).

    Args:
        broker, backend: where acks and results go.
        worker_id: the consumer that owns the deliveries.
        inflight: the worker's in-flight deliveries; a recorded one leaves it (its lease is no longer
            renewed), and one on its way to Redis is marked so (a lease renewal may race it).
        stats: counters to update.
        on_outcome: called with each outcome once it is recorded (tests, demo).
        on_recorded: called after each batch (the worker re-checks its free slots).
        recorder: writes task outcomes for monitoring, started with each batch (see ``Recorder.kick``).
        reporter: logs each recorded outcome (one line) and calls the app's ``on_outcome`` hooks.
    """

    def __init__(
        self,
        broker: Broker,
        backend: ResultBackend | None,
        worker_id: str,
        inflight: Inflight,
        stats: WorkerStats,
        on_outcome: Callable[[Outcome], None] | None,
        on_recorded: Callable[[], None],
        *,
        results_via_broker: bool = False,
        linger_s: Callable[[], float] = lambda: 0.0,
        recorder: Recorder | None = None,
        reporter: OutcomeReporter | None = None,
    ) -> None:
        self.broker = broker
        #: how long a batch may wait for more outcomes (0 when idle: no added latency; worker.py)
        self._linger_s = linger_s
        self.backend = backend
        self.worker_id = worker_id
        self.stats = stats
        self.on_outcome = on_outcome
        self._inflight = inflight
        self._on_recorded = on_recorded
        self._recorder = recorder
        self._reporter = reporter
        # results on the broker's own Redis are written in the same round trip as the acks (the app
        # decides: it knows where both live)
        self._results_via_broker = results_via_broker and isinstance(broker, ResultSettling)
        self._pending: list[tuple[Delivery | None, Outcome]] = []
        self._wanted = asyncio.Event()
        self._closing = False

    @property
    def pending(self) -> bool:
        """Outcomes wait to be recorded."""
        return bool(self._pending)

    @property
    def done(self) -> bool:
        """Closing, and everything recorded: the settle loop may end."""
        return self._closing and not self._pending

    def submit(self, d: Delivery | None, outcome: Outcome) -> None:
        """Record ``outcome`` (of ``d``; ``None`` for a delivery already acked: at-most-once)."""
        if d is not None:
            self._inflight.settling(d)
        self._pending.append((d, outcome))
        self._wanted.set()

    def close(self) -> None:
        """No more outcomes will come: record what is pending, then end."""
        self._closing = True
        self._wanted.set()

    async def settle_once(self) -> None:
        """One step of the settle loop: wait for outcomes, or record a batch."""
        if not self._pending:
            if self._closing:
                return
            self._wanted.clear()
            await self._wanted.wait()
            return
        linger_s = 0.0 if self._closing else self._linger_s()
        if linger_s > 0:  # a busy worker: more outcomes are coming, record them in one round trip
            await asyncio.sleep(linger_s)
        batch, self._pending = self._pending, []
        try:
            await self._flush(batch)
        except BrokerFullError:
            # Redis is out of memory: outcomes that need memory (a result, a retry, a dead letter) wait,
            # but plain acks free memory and go through, so tasks without results keep draining.
            heavy: list[tuple[Delivery | None, Outcome]] = []
            light: list[tuple[Delivery | None, Outcome]] = []
            for item in batch:
                (heavy if self._needs_memory(*item) else light).append(item)
            if not heavy or not light:
                self._pending[:0] = batch
                raise
            self._pending[:0] = heavy
            try:
                await self._flush(light)
            except BaseException:
                self._pending[:0] = light
                raise
            raise  # the guard backs off; the next flush retries what waits
        except BaseException:
            self._pending[:0] = batch  # keep them: the guard backs off and the next flush retries
            raise

    def _needs_memory(self, d: Delivery | None, o: Outcome) -> bool:
        """Whether recording ``o`` writes to Redis more than an ack (refused while Redis is full)."""
        if o.store is not None and self.backend is not None:
            return True
        return d is not None and o.kind in ("retry", "dead")

    async def ack_now(self, d: Delivery) -> bool:
        """Ack ``d`` at once, outside the batches (at-most-once: before its task starts); False when it
        was fenced out. Marked in flight meanwhile, like a batch."""
        keys = [(d.queue, d.entry_id)]
        self._inflight.flush(keys, True)
        try:
            return not await self.broker.settle(self.worker_id, [Settlement(d)])
        finally:
            self._inflight.flush(keys, False)

    async def _flush(self, batch: list[tuple[Delivery | None, Outcome]]) -> None:
        in_flight = [(d.queue, d.entry_id) for d, _ in batch if d is not None]
        inflight = self._inflight
        inflight.flush(in_flight, True)
        try:
            if self._recorder is not None:
                self._recorder.kick()  # task outcomes for monitoring: written alongside, never waited for
            fenced = await self._record(batch)
        finally:
            inflight.flush(in_flight, False)
        fenced_keys = {(f.queue, f.entry_id) for f in fenced}
        reporter = self._reporter
        # asked once per batch: with no hook and INFO off (the default) a success is not reported
        quiet = reporter is not None and reporter.successes_silent()
        # bound once per batch: the loop runs for every task
        drop, stats, on_outcome = inflight.drop, self.stats, self.on_outcome
        for d, outcome in batch:
            if d is not None:
                drop(d)
                if fenced_keys and (d.queue, d.entry_id) in fenced_keys:
                    stats.fenced += 1
                    logger.warning(
                        "lease of %s[%s] was lost before its outcome was recorded; another worker owns it",
                        outcome.task_name,
                        outcome.task_id,
                    )
                    continue
            state = outcome.state
            if outcome.exc is None and outcome.kind == "ack" and (state is None or state is _SUCCESS):
                # a success (outcomes.is_success, inlined: this runs for every task)
                stats.processed += 1
                stats.succeeded += 1
                if quiet:
                    if on_outcome is not None:
                        on_outcome(outcome)
                    continue
            else:
                self._count(outcome)
            if reporter is not None:
                if d is not None:
                    reporter.report(d.queue, d.entry_id, outcome, outcome.message)
                else:
                    reporter.report("", "", outcome, outcome.message)
            if on_outcome is not None:
                on_outcome(outcome)
        self._on_recorded()

    async def _record(self, batch: list[tuple[Delivery | None, Outcome]]) -> list[Delivery]:
        """Write the batch's results and settlements, fenced; return the deliveries fenced out."""
        via_broker = self._results_via_broker
        settlements: list[Settlement] = []
        # results of deliveries acked before their task ran (at-most-once): nothing left to fence
        unfenced: list[ResultWrite] = []
        separate: list[tuple[Delivery, ResultWrite]] = []  # results for a separate store, by delivery
        backend = self.backend
        add = settlements.append
        for d, o in batch:
            store = o.store if backend is not None else None
            if d is None:
                if store is not None:
                    unfenced.append(store)
                if o.unique is not None and o.task_id:  # acked before it ran: nothing to fence
                    await self.broker.release_unique(o.queue, o.unique, o.task_id)
                continue
            if o.kind == "ack" and o.unique is None:  # _settlement, inlined for a plain ack (every task)
                s = Settlement(d, "ack", d.data, o.delay_ms, o.eta_ms, o.reason)
            else:
                s = _settlement(d, o)
            if store is not None:
                if via_broker:
                    s.result = store  # settle.lua writes it only if the delivery is still owned
                else:
                    separate.append((d, store))
            add(s)
        if not via_broker and (separate or unfenced):
            await self._store_owned(separate, unfenced)
            unfenced = []
        if not settlements and not unfenced:
            return []
        if via_broker:
            return await cast(ResultSettling, self.broker).settle_with_results(
                self.worker_id, settlements, unfenced
            )
        return await self.broker.settle(self.worker_id, settlements)

    async def _store_owned(
        self, separate: list[tuple[Delivery, ResultWrite]], unfenced: list[ResultWrite]
    ) -> None:
        """A separate result store: renew the leases (which says what is still owned), then write only
        the results of owned deliveries. The settle that follows fences the others' acks too."""
        assert self.backend is not None
        items = list(unfenced)
        if separate:
            lost = await self.broker.extend(self.worker_id, [d for d, _ in separate])
            gone = {(d.queue, d.entry_id, d.deliveries) for d in lost}
            items += [r for d, r in separate if (d.queue, d.entry_id, d.deliveries) not in gone]
        if items:
            await self.backend.store_async(items)

    def _count(self, o: Outcome) -> None:
        # the outcome's log line is the reporter's (celeriac.outcomes): one line each
        self.stats.processed += 1
        if o.kind == "retry":
            self.stats.retried += 1
        elif o.kind == "dead":
            self.stats.dead_lettered += 1
        elif o.state is TaskState.REVOKED:
            self.stats.revoked += 1
        elif o.exc is not None:
            self.stats.failed += 1
        else:
            self.stats.succeeded += 1


def _settlement(d: Delivery, o: Outcome) -> Settlement:
    kind = o.kind
    assert kind != "release", "hand-backs never reach the settle batch"
    s = Settlement(d, kind, o.retry_data if kind == "retry" else d.data, o.delay_ms, o.eta_ms, o.reason)
    if o.unique is not None and kind != "retry":
        s.unique, s.task_id = o.unique, o.task_id or ""
    return s
