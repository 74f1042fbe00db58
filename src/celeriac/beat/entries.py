"""Periodic entries: Celery's ``beat_schedule`` items, checked, with a digest that versions them.

An entry is what to send (task, args, kwargs, options) and when (a schedule), plus celeriac's
catch-up policy. Its **digest** covers everything that changes what a run does; the scheduler keeps
the digest of the definition deployed last in Redis, and a run is enqueued only for that digest, so a
deploy that changes or removes an entry never runs the old definition again.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgpack

from ..exceptions import ConfigurationError
from ..message import Message
from ..schedules import BaseSchedule, crontab, schedule, to_schedule

if TYPE_CHECKING:
    from ..app import Celeriac

CatchUp = Literal["once", "skip", "all"]
CATCH_UP_POLICIES: tuple[str, ...] = ("once", "skip", "all")
#: the most missed slots one catch-up enqueues with ``catch_up="all"``
MAX_CATCH_UP = 1000

# options of beat_schedule entries that go to the message (Celery's apply_async options)
_SEND_OPTIONS = frozenset(
    {
        "queue",
        "expires",
        "ignore_result",
        "max_retries",
        "acks_late",
        "result_expires",
        "time_limit",
        "soft_time_limit",
    }
)
# Celery options accepted and not used by celeriac (yet): kept in the digest, not sent
_IGNORED_OPTIONS = frozenset({"priority", "routing_key", "exchange", "serializer", "headers"})

_ID_NAMESPACE = uuid.UUID("6f0c7a4e-5b1d-4f8a-9a57-3c1f2b9d8e10")


@dataclass(frozen=True)
class Entry:
    """One periodic entry.

    Attributes:
        name: unique name (the ``beat_schedule`` key).
        task: task name to send.
        schedule: when.
        args, kwargs: the task's arguments.
        options: Celery's ``apply_async`` options (``queue``, ``expires`` in seconds after the slot, ...).
        queue: the queue runs go to (``options["queue"]``, else the app's routing).
        catch_up: after downtime, ``"once"`` runs the latest missed slot once (Celery), ``"skip"``
            runs none, ``"all"`` runs each missed slot (at most ``MAX_CATCH_UP``).
        grace_s: a slot later than this is not run at all (``"once"``/``"all"``); None: no limit.
        source: ``"config"`` (``beat_schedule``, ``add_periodic_task``) or ``"dynamic"`` (added at run
            time with ``celeriac beat add`` / :meth:`celeriac.beat.Beat.add`).
    """

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    catch_up: CatchUp = "once"
    grace_s: float | None = None
    source: str = "config"

    @functools.cached_property
    def digest(self) -> str:
        """A short hash of the definition: equal definitions, equal digests."""
        return hashlib.sha256(_pack(self.definition())).hexdigest()[:16]

    def definition(self) -> dict[str, Any]:
        """The entry as plain values (stored in Redis, shown by ``celeriac beat list --json``)."""
        return {
            "name": self.name,
            "task": self.task,
            "schedule": self.schedule.definition(),
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": dict(self.options),
            "queue": self.queue,
            "catch_up": self.catch_up,
            "grace_s": self.grace_s,
        }

    def task_id(self, slot_ms: int) -> str:
        """The id of the run of one slot: the same on every scheduler, so a run is one message."""
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.name}\x00{self.digest}\x00{slot_ms}"))

    def message(self, app: Celeriac, slot_ms: int, task_id: str | None = None) -> bytes:
        """The encoded message of the run of ``slot_ms`` (``expires`` counts from the slot)."""
        from ..task import build_message, normalize_options

        opts = {k: v for k, v in self.options.items() if k in _SEND_OPTIONS and k not in ("queue", "expires")}
        send = normalize_options(**opts, task_id=task_id or self.task_id(slot_ms))
        expires = self.options.get("expires")
        if expires is not None:
            send = replace(send, expires_ms=slot_ms + int(float(expires) * 1000))
        task = app.tasks.get(self.task)
        args, kwargs = tuple(self.args), dict(self.kwargs)
        message: Message = (
            task.build_message(args, kwargs, send)
            if task is not None
            else build_message(self.task, args, kwargs, send)
        )
        serializer = (task.serializer if task is not None else None) or app.conf.task_serializer
        if serializer != "msgpack":
            message = replace(message, serializer=serializer)
        return app._checked_size(app.codec.encode(message))


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]


def pack_entry(entry: Entry) -> bytes:
    """The registry form of an entry (msgpack; with its digest, so a listing need not hash)."""
    return _pack({**entry.definition(), "source": entry.source, "digest": entry.digest})


def unpack_entry(data: bytes) -> Entry:
    """An entry from its registry form.

    Raises:
        ConfigurationError: the stored definition does not parse.
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        entry = Entry(
            name=raw["name"],
            task=raw["task"],
            schedule=parse_definition(raw["schedule"]),
            args=tuple(raw.get("args") or ()),
            kwargs=dict(raw.get("kwargs") or {}),
            options=dict(raw.get("options") or {}),
            queue=raw["queue"],
            catch_up=raw.get("catch_up", "once"),
            grace_s=raw.get("grace_s"),
            source=raw.get("source", "dynamic"),
        )
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise ConfigurationError("beat entry", f"stored definition does not parse: {exc}") from None
    digest = raw.get("digest")
    if isinstance(digest, str):
        entry.__dict__["digest"] = digest  # written by pack_entry from the same definition
    return entry


@functools.lru_cache(maxsize=4096)
def parse_definition(text: str) -> BaseSchedule:
    """The schedule of a :meth:`BaseSchedule.definition` text (``every 10s``, ``cron 0 9 * * 1-5``)."""
    parts = text.split()
    if parts and parts[0] == "every":
        offset = float(parts[3].rstrip("s")) if len(parts) >= 4 and parts[2] == "offset" else 0.0
        return schedule(float(parts[1].rstrip("s")), offset=offset)
    if parts and parts[0] == "cron" and len(parts) in (6, 7):
        tz = parts[6].split("=", 1)[1] if len(parts) == 7 else None
        return crontab.from_string(" ".join(parts[1:6]), tz=tz)
    raise ConfigurationError("schedule", f"cannot parse {text!r}")


def make_entry(
    app: Celeriac, name: Any, spec: Any, *, source: str = "config", check_task: bool = True
) -> Entry:
    """An :class:`Entry` from one ``beat_schedule`` item, checked.

    Raises:
        ConfigurationError: naming the entry: not a mapping, no or unknown task, a bad schedule (a
            period <= 0, an invalid crontab), bad arguments or options, an unknown catch-up policy.
    """
    where = f"beat_schedule[{name!r}]"
    if not isinstance(name, str) or not name or any(c in name for c in "\n\r{}"):
        raise ConfigurationError(where, "an entry name must be a non-empty string without braces or newlines")
    if not isinstance(spec, Mapping):
        raise ConfigurationError(where, f"expected a dict with 'task' and 'schedule', got {spec!r}")
    unknown = set(spec) - {"task", "schedule", "args", "kwargs", "options", "relative", "catch_up", "grace_s"}
    if unknown:
        raise ConfigurationError(where, f"unknown key(s) {sorted(unknown)!r}")
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ConfigurationError(where, f"'task' must be a task name, got {task!r}")
    if check_task and task not in app.tasks:
        raise ConfigurationError(
            where, f"unknown task {task!r}: no task of that name is registered (import its module in the app)"
        )
    if "schedule" not in spec:
        raise ConfigurationError(
            where, "missing 'schedule' (seconds, timedelta, crontab(...) or a cron string)"
        )
    sched = to_schedule(spec["schedule"], where=where)
    args = spec.get("args", ())
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise ConfigurationError(where, f"'args' must be a list or tuple, got {args!r}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigurationError(where, f"'kwargs' must be a dict with string keys, got {kwargs!r}")
    options = spec.get("options", {}) or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(where, f"'options' must be a dict, got {options!r}")
    bad = set(options) - _SEND_OPTIONS - _IGNORED_OPTIONS
    if bad:
        raise ConfigurationError(
            where, f"unknown option(s) {sorted(bad)!r}; known: {sorted(_SEND_OPTIONS)!r}"
        )
    expires = options.get("expires")
    if expires is not None:
        if isinstance(expires, timedelta):
            options = {**options, "expires": expires.total_seconds()}
        elif isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires <= 0:
            raise ConfigurationError(
                where, f"options['expires'] must be a positive number of seconds, got {expires!r}"
            )
    catch_up = spec.get("catch_up", "once")
    if catch_up not in CATCH_UP_POLICIES:
        raise ConfigurationError(
            where, f"'catch_up' must be one of {list(CATCH_UP_POLICIES)!r}, got {catch_up!r}"
        )
    grace = spec.get("grace_s")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace <= 0):
        raise ConfigurationError(where, f"'grace_s' must be a positive number of seconds, got {grace!r}")
    if catch_up == "all" and grace is None:
        raise ConfigurationError(
            where, "catch_up='all' needs grace_s (how old a missed slot may be and still run)"
        )
    queue = options.get("queue") or app.route(task, app.tasks.get(task))
    entry = Entry(
        name=name,
        task=task,
        schedule=sched,
        args=tuple(args),
        kwargs=dict(kwargs),
        options=dict(options),
        queue=queue,
        catch_up=catch_up,
        grace_s=float(grace) if grace is not None else None,
        source=source,
    )
    try:
        _pack(entry.definition())
        if check_task and task in app.tasks:
            app.tasks[task].check_arguments(entry.args, entry.kwargs)
    except TypeError as exc:
        raise ConfigurationError(where, f"arguments do not fit: {exc}") from None
    return entry


def add_periodic_task(
    app: Celeriac,
    schedule: Any,
    sig: Any,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    **options: Any,
) -> str:
    """``app.add_periodic_task``: run ``sig`` on ``schedule`` (seconds, ``timedelta``, ``crontab(...)``
    or a cron string). The same ``name`` replaces an entry. ``catch_up=`` and ``grace_s=`` set the
    entry's catch-up policy; other keywords are send options (``queue``, ``expires``...). Checked
    when a scheduler starts."""
    catch = {k: options.pop(k) for k in ("catch_up", "grace_s") if k in options}
    name = name or f"{sig.name}{tuple(sig.args) + tuple(args)!r}"
    app.conf.beat_schedule[name] = {
        "task": sig.name,
        "schedule": schedule,
        "args": tuple(sig.args) + tuple(args),
        "kwargs": {**sig.kwargs, **(kwargs or {})},
        "options": {**sig.options, **options},
        **catch,
    }
    return name


def configured_entries(app: Celeriac, *, check_task: bool = True) -> dict[str, Entry]:
    """The entries of ``app.conf.beat_schedule`` (and ``add_periodic_task``), each checked.

    Fires ``app.on_after_configure`` first (once), where Celery apps call ``add_periodic_task``.
    """
    app.fire_configured()
    return {
        name: make_entry(app, name, spec, check_task=check_task)
        for name, spec in app.conf.beat_schedule.items()
    }
