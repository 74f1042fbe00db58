"""The scheduling loop: every instance walks the slots of every entry and claims each in Redis.

Why this is safe with any number of instances: an instance never decides alone that a slot runs. For
each entry it walks the slots in order and, a little ahead of each (``lead``), calls
``beat_claim.lua`` with the slot and its message: the script compares the slot with the entry's last
claimed slot and, only if it is newer, records it and puts the run in the queue's delayed set with
due time = the slot, in the same step. The first instance to arrive enqueues, the others get "already
claimed" and move on. Nothing is held between calls, so killing any instance at any moment loses
nothing: a claimed slot is already enqueued, an unclaimed one is claimed by the next instance that
walks past it. The run starts when a worker promotes it at its due time (precision of the delayed
set, not of this loop).

Missed slots (every instance was down) show up as a gap between the entry's last claimed slot and the
slot before the one being claimed; the script refuses the steady-state claim, and the instance applies
the entry's catch-up policy (``once``, ``skip``, ``all``) in a second, compare-and-set call.

Idle cost: one ``GET`` per ``poll_s`` (1 s), which notices entries added, changed or removed by other
processes; every 30th poll is ``beat_poll.lua`` instead, which also keeps the clock in step with Redis.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM_CLOCK
from .._redis.client import translate_errors
from ..exceptions import BrokerError
from .admin import Beat
from .entries import MAX_CATCH_UP, Entry, configured_entries
from .store import claim_script, poll_script

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger("celeriac.beat")

#: how long before its due time a run is enqueued (at most; half the period for short periods)
DEFAULT_LEAD_S = 1.0
#: how often an idle scheduler checks for changed entries
DEFAULT_POLL_S = 1.0
# every this many polls the scheduler also reads the Redis clock (beat_poll.lua)
_CLOCK_EVERY = 30


@dataclass
class _Track:
    entry: Entry
    digest: str
    lead_ms: int
    next_ms: int | None = None
    prev_ms: int | None = None
    inactive: bool = False


@dataclass
class SchedulerStats:
    """Counters of one scheduler instance."""

    enqueued: int = 0
    already_claimed: int = 0
    caught_up: int = 0
    polls: int = 0
    claims: int = 0


class Scheduler:
    """One periodic scheduler instance (``celeriac beat``, or embedded in a worker with ``-B``).

    Args:
        app: the app: its ``beat_schedule`` (checked at :meth:`open`), Redis and time zone.
        clock: wall clock in epoch seconds. Default: the app's clock if it was given one
            (``Celeriac(clock=FakeClock())``), else this machine's clock kept in step with Redis's
            ``TIME`` (one clock for all schedulers and workers). A fake clock is used as is.
        lead_s: how far ahead of its due time a run is enqueued.
        poll_s: how often to look for changed entries when nothing is due.
        sync_config: make Redis hold this app's configured entries at :meth:`open` (the definition
            deployed last wins). False: only run what Redis holds.

    Raises:
        ConfigurationError: at :meth:`open`, an invalid entry (naming it).
    """

    def __init__(
        self,
        app: Celeriac,
        *,
        clock: Callable[[], float] | None = None,
        lead_s: float = DEFAULT_LEAD_S,
        poll_s: float = DEFAULT_POLL_S,
        sync_config: bool = True,
    ) -> None:
        self.app = app
        if clock is None and app.clock is not SYSTEM_CLOCK:  # Celeriac(clock=FakeClock()): use it
            clock = app.clock.time
        self._fake_clock = clock
        self._offset_s = 0.0  # Redis clock minus local clock
        self.beat = Beat(app, clock=self.now_s)
        self.lead_ms = int(lead_s * 1000)
        self.poll_s = poll_s
        self.sync_config = sync_config
        self.stats = SchedulerStats()
        self.tracks: dict[str, _Track] = {}
        self._rev: int | None = None
        self._next_poll_s = 0.0
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._opened = False

    def now_s(self) -> float:
        if self._fake_clock is not None:
            return self._fake_clock()
        return time.time() + self._offset_s

    # ---- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        """Check the configured entries and publish them to Redis.

        Raises:
            ConfigurationError: an invalid entry, naming it.
            BrokerError: Redis unreachable.
        """
        configured = configured_entries(self.app)
        self._opened = True
        self._poll()
        if self.sync_config:
            self.beat.sync_configured(configured)
        self._reload()
        logger.info("beat: %d periodic entr%s", len(self.tracks), "y" if len(self.tracks) == 1 else "ies")

    def run(self) -> None:
        """Tick until :meth:`stop` (blocking; the standalone ``celeriac beat``)."""
        self.open()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                wait_s = self.tick()
                backoff = 0.1
            except BrokerError as exc:
                logger.warning("beat: %s; retrying in %.1fs", exc, backoff)
                wait_s, backoff = backoff, min(5.0, backoff * 2)
            self._stop.wait(wait_s)

    def stop(self) -> None:
        """Make :meth:`run` return (thread-safe)."""
        self._stop.set()

    # ---- one pass ---------------------------------------------------------------------------------
    def tick(self) -> float:
        """Claim what is due, then return how long to sleep (seconds) before the next pass (opens the
        scheduler on the first call)."""
        if not self._opened:
            self.open()
        now_s = self.now_s()
        if now_s >= self._next_poll_s:
            if self._poll():
                self._reload()
            now_s = self.now_s()
        now_ms = int(now_s * 1000)
        for track in self.tracks.values():
            if track.inactive:
                continue
            if track.next_ms is None:
                self._start_track(track, now_ms)
            assert track.next_ms is not None
            while (
                not track.inactive and track.next_ms is not None and track.next_ms - track.lead_ms <= now_ms
            ):
                if not self._claim(track, now_ms):
                    break
        now_s = self.now_s()
        wait_s = self._next_poll_s - now_s
        for track in self.tracks.values():
            if not track.inactive and track.next_ms is not None:
                wait_s = min(wait_s, (track.next_ms - track.lead_ms) / 1000 - now_s)
        return max(0.0, wait_s)

    def _poll(self) -> bool:
        """Read the revision (and the Redis clock); True when entries changed since the last read."""
        url = self.beat.url
        sync_clock = self._fake_clock is None and self.stats.polls % _CLOCK_EVERY == 0
        before = time.time()
        with translate_errors(url):
            if sync_clock:
                rev, secs, usecs = poll_script()(self.beat.client, [self.beat.keys.rev], [])
            else:  # one plain command when nothing is due: the idle cost
                rev = self.beat.client.get(self.beat.keys.rev) or 0
        after = time.time()
        self.stats.polls += 1
        if sync_clock:
            self._offset_s = int(secs) + int(usecs) / 1e6 - (before + after) / 2
        self._next_poll_s = self.now_s() + self.poll_s
        changed = int(rev) != self._rev
        self._rev = int(rev)
        return changed

    def _reload(self) -> None:
        entries = self.beat.entries()
        for name in list(self.tracks):
            if name not in entries:
                del self.tracks[name]
        for name, entry in entries.items():
            track = self.tracks.get(name)
            digest = entry.digest
            if track is not None and track.digest == digest:
                track.inactive = False  # paused or resumed: ask the script again
                continue
            period = entry.schedule.typical_period_ms
            self.tracks[name] = _Track(entry, digest, min(self.lead_ms, max(1, period // 2)))

    def _start_track(self, track: _Track, now_ms: int) -> None:
        """Start walking an entry's slots; first apply its catch-up policy if every instance was down
        over past slots (Celery runs an overdue entry once at start: so does ``once``)."""
        schedule, tz = track.entry.schedule, self.beat.tz
        track.next_ms = schedule.next_after(now_ms, tz)
        track.prev_ms = schedule.latest_at_or_before(now_ms, tz)
        if track.prev_ms is not None:
            status, last = self._call(track, [], prev=track.prev_ms, expect="", now_ms=now_ms)
            if status == -2:
                status, _ = self._catch_up(track, last, track.prev_ms + 1, [], now_ms)
                self.stats.enqueued += max(0, status)
            elif status == -1:
                self._inactive(track)

    def _claim(self, track: _Track, now_ms: int) -> bool:
        """Claim the track's next slot (and apply the catch-up policy if slots were missed).
        Returns False when the track cannot go on now."""
        assert track.next_ms is not None
        entry, slot = track.entry, track.next_ms
        status, last = self._call(track, [slot], prev=track.prev_ms, expect="", now_ms=now_ms)
        if status == -2:
            status, last = self._catch_up(track, last, slot, [slot], now_ms)
        if status == -3:
            return False  # someone else moved the entry meanwhile: look again on the next pass
        if status == -1:
            self._inactive(track)
            return False
        if status > 0:
            self.stats.enqueued += status
        else:
            self.stats.already_claimed += 1
        schedule, tz = entry.schedule, self.beat.tz
        # the slot is done (ours or another instance's); if others went further, follow them
        base = max(slot, last) if last > 0 else slot
        track.prev_ms = slot if base == slot else schedule.latest_at_or_before(base, tz)
        track.next_ms = schedule.next_after(base, tz)
        return True

    def _catch_up(
        self, track: _Track, last: int, before_ms: int, then: list[int], now_ms: int
    ) -> tuple[int, int]:
        """Enqueue the missed slots (after ``last``, before ``before_ms``) the policy wants, and the
        slots ``then``, if the last claimed slot is still ``last`` (compare-and-set)."""
        entry = track.entry
        missed = self._missed(track, last, before_ms, now_ms)
        status, new_last = self._call(track, [*missed, *then], prev=None, expect=str(last), now_ms=now_ms)
        if status >= 0:
            run = max(0, status - len(then))
            self.stats.caught_up += run
            logger.warning(
                "beat: %s missed slots after %s (every scheduler was down); catch_up=%r: %d run now",
                entry.name,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last / 1000)),
                entry.catch_up,
                run,
            )
        return status, new_last

    def _inactive(self, track: _Track) -> None:
        track.inactive = True
        if track.entry.name not in self._warned:
            self._warned.add(track.entry.name)
            logger.info(
                "beat: %s is paused or another definition is active; not scheduling it", track.entry.name
            )

    def _missed(self, track: _Track, last: int, slot: int, now_ms: int) -> list[int]:
        """Missed slots (after ``last``, before ``slot``) to run now under the entry's policy."""
        entry, tz = track.entry, self.beat.tz
        policy = entry.catch_up
        if policy == "skip":
            return []
        if policy == "once":
            latest = entry.schedule.latest_at_or_before(slot - 1, tz)
            return [latest] if latest is not None and latest > last else []
        # "all": each missed slot within the grace period (grace_s is required for "all")
        assert entry.grace_s is not None
        since = max(last, now_ms - int(entry.grace_s * 1000) - 1)
        recent: collections.deque[int] = collections.deque(maxlen=MAX_CATCH_UP)
        for missed in entry.schedule.slots_between(since, slot - 1, tz):
            recent.append(missed)
        return list(recent)

    def _call(
        self, track: _Track, slots: list[int], *, prev: int | None, expect: str, now_ms: int
    ) -> tuple[int, int]:
        entry = track.entry
        grace_ms = int(entry.grace_s * 1000) if entry.grace_s else 0
        keys = self.beat.keys
        args: list[Any] = [
            keys.wake(entry.queue),
            entry.name,
            track.digest,
            "" if prev is None else prev,
            expect,
            now_ms,
            grace_ms,
        ]
        for slot in slots:
            args += [slot, entry.message(self.app, slot)]
        with translate_errors(self.beat.url):
            status, last = claim_script()(
                self.beat.client, [keys.state(entry.queue), keys.delayed(entry.queue)], args
            )
        self.stats.claims += 1
        return int(status), int(last)


def run_scheduler(app: Celeriac, **options: Any) -> Scheduler:
    """Build a scheduler and run it until stopped (``celeriac beat``)."""
    scheduler = Scheduler(app, **options)
    scheduler.run()
    return scheduler
