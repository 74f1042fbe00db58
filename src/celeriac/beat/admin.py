"""Periodic entries as an operator sees them: list, add, remove, pause, resume, run now.

Configured entries (``beat_schedule``, ``add_periodic_task``) and dynamic ones (added here, at run time,
without a database) live side by side in Redis (``store.py``); every scheduler runs what is there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo as TzInfo
from typing import TYPE_CHECKING, Any

from .._redis.client import to_str, translate_errors
from ..exceptions import ConfigurationError
from ..schedules import get_timezone
from .entries import Entry, make_entry, pack_entry, unpack_entry
from .store import BeatKeys, register_script

if TYPE_CHECKING:
    import redis

    from ..app import Celeriac
    from ..result import AsyncResult

_SCAN_COUNT = 1000


def timezone_of(app: Celeriac) -> TzInfo:
    """The zone crontab entries without their own ``tz`` are read in (Celery's rule): ``timezone``,
    else UTC when ``enable_utc`` (the default), else the machine's local zone."""
    if app.conf.timezone is not None:
        return get_timezone(app.conf.timezone)
    if app.conf.enable_utc:
        return get_timezone(None)
    return _local_zone()


def _local_zone() -> TzInfo:
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
            name = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""
        except OSError:
            name = ""
    try:
        return get_timezone(name or None)
    except ConfigurationError:
        return get_timezone(None)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass(frozen=True)
class EntryStatus:
    """One entry with its state in Redis.

    Attributes:
        entry: the definition.
        paused: paused by an operator (``celeriac beat pause``).
        active: this definition is the one deployed last (its runs are enqueued); False while another
            definition of the same name is active (a rolling deploy), or before any scheduler ran it.
        last_run_ms: due time of the last run enqueued whose due time has passed, or None.
        next_run_ms: due time of the next run (already enqueued or not), or None when paused.
    """

    entry: Entry
    paused: bool
    active: bool
    last_run_ms: int | None
    next_run_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.entry.definition(),
            "source": self.entry.source,
            "digest": self.entry.digest,
            "paused": self.paused,
            "active": self.active,
            "last_run_ms": self.last_run_ms,
            "next_run_ms": self.next_run_ms,
        }


class Beat:
    """The periodic entries of an app, in its Redis (the Python side of ``celeriac beat ...``).

    Args:
        app: the app (its broker's Redis, key prefix, routing and time zone).
        clock: wall clock in epoch seconds (default: the app's clock).
    """

    def __init__(self, app: Celeriac, *, clock: Any = None) -> None:
        from ..broker.redis import RedisBroker

        broker = app.broker
        if not isinstance(broker, RedisBroker):
            raise ConfigurationError(
                "broker_url", "periodic tasks need a Redis broker (memory:// has no scheduler)"
            )
        self.app = app
        self.url = broker.url
        self.keys = BeatKeys(broker.keys)
        self.client: redis.Redis = broker.sync
        self.clock = clock or app.clock.time
        self.tz = timezone_of(app)

    # ---- reading ---------------------------------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        """Every entry in Redis, by name (read in bounded chunks)."""
        out: dict[str, Entry] = {}
        with translate_errors(self.url):
            cursor = 0
            while True:
                reply: Any = self.client.hscan(self.keys.entries, cursor, count=_SCAN_COUNT)
                cursor, chunk = reply
                for name, data in chunk.items():
                    try:
                        out[to_str(name)] = unpack_entry(_bytes(data))
                    except ConfigurationError:
                        continue  # written by something else: not ours to run (shown by nobody)
                if cursor == 0:
                    return out

    def list(self) -> list[EntryStatus]:
        """Every entry with its paused flag and last and next run, sorted by name (each queue's state
        hash read in bounded chunks)."""
        entries = self.entries()
        state: dict[str, dict[str, Any]] = {}
        with translate_errors(self.url):
            for queue in {e.queue for e in entries.values()}:
                fields = state[queue] = {}
                cursor = 0
                while True:
                    reply: Any = self.client.hscan(self.keys.state(queue), cursor, count=_SCAN_COUNT)
                    cursor, chunk = reply
                    fields.update((to_str(k), v) for k, v in chunk.items() if not to_str(k).startswith("p:"))
                    if cursor == 0:
                        break
        now_ms = int(self.clock() * 1000)
        out: list[EntryStatus] = []
        for name in sorted(entries):
            entry = entries[name]
            fields = state[entry.queue]
            out.append(
                self._status(
                    entry, fields.get(f"d:{name}"), fields.get(f"l:{name}"), fields.get(f"lp:{name}"), now_ms
                )
            )
        return out

    def _status(self, entry: Entry, d: Any, last: Any, before: Any, now_ms: int) -> EntryStatus:
        active_digest = to_str(d) if d is not None else ""
        paused = active_digest.startswith("paused:")
        active = active_digest.removeprefix("paused:") == entry.digest
        last_ms = int(last) if last is not None else None
        before_ms = int(before) if before is not None else None
        if last_ms is not None and last_ms > now_ms:  # enqueued ahead: not run yet
            return EntryStatus(entry, paused, active, before_ms, None if paused else last_ms)
        next_ms = None if paused else entry.schedule.next_after(max(now_ms, last_ms or 0), self.tz)
        return EntryStatus(entry, paused, active, last_ms, next_ms)

    def get(self, name: str) -> EntryStatus:
        """One entry's status.

        Raises:
            ConfigurationError: no entry of that name.
        """
        with translate_errors(self.url):
            data = self.client.hget(self.keys.entries, name)
        if data is None:
            raise ConfigurationError(f"beat entry {name!r}", "no such entry (see `celeriac beat list`)")
        entry = unpack_entry(_bytes(data))
        with translate_errors(self.url):
            d, last, before = self.client.hmget(
                self.keys.state(entry.queue), f"d:{name}", f"l:{name}", f"lp:{name}"
            )
        return self._status(entry, d, last, before, int(self.clock() * 1000))

    # ---- changing --------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        task: str,
        schedule: Any,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        catch_up: str = "once",
        grace_s: float | None = None,
        replace: bool = False,
    ) -> Entry:
        """Add a dynamic entry (stored in Redis; every scheduler picks it up within a second).

        ``task`` need not be registered in this process (it runs on workers that know it).

        Raises:
            ConfigurationError: a bad definition (naming the entry), or an entry of that name exists
                and ``replace`` is false, or it is a configured entry (change those in code).
        """
        spec: dict[str, Any] = {
            "task": task,
            "schedule": schedule,
            "args": tuple(args),
            "kwargs": dict(kwargs or {}),
            "options": dict(options or {}),
            "catch_up": catch_up,
        }
        if grace_s is not None:
            spec["grace_s"] = grace_s
        entry = make_entry(self.app, name, spec, source="dynamic", check_task=task in self.app.tasks)
        with translate_errors(self.url):
            existing = self.client.hget(self.keys.entries, name)
        if existing is not None:
            old = unpack_entry(_bytes(existing))
            if old.source == "config":
                raise ConfigurationError(
                    f"beat entry {name!r}", "is a configured entry (beat_schedule): change it in the code"
                )
            if not replace:
                raise ConfigurationError(
                    f"beat entry {name!r}", "exists already (remove it, or pass replace)"
                )
            if old.queue != entry.queue:
                self._register(old, "remove")
        self._register(entry, "set")
        with translate_errors(self.url):
            self.client.hset(self.keys.entries, name, pack_entry(entry))
            self.client.incr(self.keys.rev)
        return entry

    def remove(self, name: str) -> None:
        """Remove an entry: its run enqueued ahead (if any) is withdrawn and it never runs again.
        A configured entry comes back when a scheduler with it in its ``beat_schedule`` starts.

        Raises:
            ConfigurationError: no entry of that name.
        """
        entry = self.get(name).entry
        self._register(entry, "remove")
        with translate_errors(self.url):
            self.client.hdel(self.keys.entries, name)
            self.client.incr(self.keys.rev)

    def pause(self, name: str) -> bool:
        """Stop running an entry until :meth:`resume` (its run enqueued ahead is withdrawn). Returns
        False when it was paused already."""
        return self._set_state(name, "pause")

    def resume(self, name: str) -> bool:
        """Run a paused entry again from its next slot (slots missed while paused are not caught up).
        Returns False when it was not paused."""
        return self._set_state(name, "resume")

    def run_now(self, name: str) -> AsyncResult[Any]:
        """Send an entry's task now, once, outside its schedule (its slots are not affected)."""
        entry = self.get(name).entry
        options = {k: v for k, v in entry.options.items() if k in ("expires", "ignore_result", "max_retries")}
        return self.app.send_task(entry.task, entry.args, dict(entry.kwargs), queue=entry.queue, **options)

    def _set_state(self, name: str, mode: str) -> bool:
        entry = self.get(name).entry
        changed = self._register(entry, mode)
        with translate_errors(self.url):
            self.client.incr(self.keys.rev)
        return changed

    def _register(self, entry: Entry, mode: str) -> bool:
        keys = [self.keys.state(entry.queue), self.keys.delayed(entry.queue)]
        with translate_errors(self.url):
            return bool(
                register_script()(
                    self.client, keys, [entry.name, mode, entry.digest, int(self.clock() * 1000)]
                )
            )

    def sync_configured(self, configured: Mapping[str, Entry]) -> None:
        """Make Redis hold exactly these configured entries (a scheduler calls this at start: the
        definitions deployed last win). Dynamic entries are kept, unless a configured one of the same
        name replaces them."""
        stored = self.entries()
        for name, entry in configured.items():
            old = stored.get(name)
            if old is not None and old.queue != entry.queue:
                self._register(old, "remove")
            self._register(entry, "set")
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for name, entry in configured.items():
                if stored.get(name) is None or pack_entry(stored[name]) != pack_entry(entry):
                    pipe.hset(self.keys.entries, name, pack_entry(entry))
            pipe.execute()
        for name, old in stored.items():
            if old.source == "config" and name not in configured:
                self._register(old, "remove")
                with translate_errors(self.url):
                    self.client.hdel(self.keys.entries, name)
        with translate_errors(self.url):
            self.client.incr(self.keys.rev)
