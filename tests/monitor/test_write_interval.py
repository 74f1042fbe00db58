"""How often a worker's recorder writes (``Recorder._write_all``): big batches for a busy worker, about
one write per ``_MAX_INTERVAL_S`` for one that makes few records, at once after an idle spell.

A fake clock: the recorder's ``time`` and ``asyncio.sleep`` are replaced, records arrive at a set rate
while it sleeps, and a write is counted instead of sent.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from celeriac.monitor import recorder as recorder_module
from celeriac.monitor.recorder import (
    _MAX_INTERVAL_S,
    _MIN_INTERVAL_S,
    _WRITE_RECORDS,
    MonitorSettings,
    Recorder,
    write_interval,
)


def test_the_interval_is_the_time_the_rate_takes_to_make_a_batch_within_its_bounds() -> None:
    assert write_interval(_WRITE_RECORDS * 10, 0.1) == _MIN_INTERVAL_S  # busy: the least interval
    assert write_interval(_WRITE_RECORDS, 0.4) == pytest.approx(0.4)
    assert write_interval(35, 0.1) == _MAX_INTERVAL_S  # a few dozen per 100 ms: the longest
    assert write_interval(1, 3600.0) == _MAX_INTERVAL_S  # the first record after an idle hour
    assert write_interval(0, 0.1) == _MAX_INTERVAL_S


class _Simulation:
    """Records arriving at ``rate`` a second on a fake clock; the writes the recorder makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, rate: float) -> None:
        self.now = 1000.0
        self.rate = rate
        self.due = 0.0  # records owed by the rate, not yet arrived (fractions)
        self.writes: list[tuple[float, int]] = []  # (when, records)
        self.recorder = Recorder(None, "celeriac", "w1", MonitorSettings())  # type: ignore[arg-type]
        self.recorder._last_write = self.now - 3600.0  # idle for an hour
        monkeypatch.setattr(recorder_module, "time", types.SimpleNamespace(monotonic=lambda: self.now))
        monkeypatch.setattr(recorder_module, "asyncio", types.SimpleNamespace(sleep=self._sleep))
        monkeypatch.setattr(self.recorder, "flush", self._flush)

    def advance(self, dt: float) -> None:
        self.now += dt
        self.due += self.rate * dt
        arrived = int(self.due)
        self.due -= arrived
        self.recorder._pending += [("q", (), None)] * arrived

    async def _sleep(self, dt: float) -> None:
        self.advance(dt)  # records keep coming while the writer waits

    async def _flush(self) -> None:
        self.writes.append((self.now, len(self.recorder._pending)))
        self.recorder._pending = []

    def run(self, seconds: float, settle_s: float = 0.01) -> None:
        """The settle loop: a batch of acks every ``settle_s``, each kicking a write unless one is on
        its way (here a write runs to its end within the kick, on the fake clock)."""

        async def scenario() -> None:
            end = self.now + seconds
            while self.now < end:
                self.advance(settle_s)
                if self.recorder._pending:
                    await self.recorder._write_all()

        asyncio.run(scenario())


def test_a_worker_making_a_few_hundred_records_a_second_writes_about_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = _Simulation(monkeypatch, rate=345.0)
    sim.run(10.0)
    assert sim.writes[0][1] == 3  # the first batch after the idle hour: written at once
    assert 10 <= len(sim.writes) <= 12  # not one per 100 ms (100)
    gaps = [b[0] - a[0] for a, b in zip(sim.writes, sim.writes[1:])]
    assert max(gaps) <= _MAX_INTERVAL_S + 0.011  # the dashboard lags by a second at most
    assert sum(n for _, n in sim.writes) == pytest.approx(3450, abs=5)


def test_a_busy_worker_writes_big_batches_at_the_least_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = _Simulation(monkeypatch, rate=20_000.0)
    sim.run(5.0)
    steady = sim.writes[2:]  # after the first write (at once) and the one a second after it
    gaps = [b[0] - a[0] for a, b in zip(steady, steady[1:])]
    assert all(g == pytest.approx(_MIN_INTERVAL_S, abs=0.011) for g in gaps)
    assert all(n >= 1_900 for _, n in steady[1:])


def test_a_lone_record_after_an_idle_spell_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = _Simulation(monkeypatch, rate=0.0)
    sim.recorder._pending = [("q", (), None)]
    start = sim.now

    async def kick() -> Any:
        await sim.recorder._write_all()

    asyncio.run(kick())
    assert sim.writes == [(start, 1)]
