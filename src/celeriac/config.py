"""App configuration: one flat, validated object with Celery's setting names where Celery has them.

Every setting can also come from the environment as ``CELERIAC_<NAME>`` (``CELERIAC_BROKER_URL``,
``CELERIAC_TASK_ACKS_LATE=false``, ...); explicit arguments win over the environment.

Each setting is declared with :func:`setting`, which takes its validator (and any other names it
answers to): a field declared without one fails at import. Adding a setting is one line.

Why this module is long: every setting and its validator live here (one home per rule), with Celery's
ways in (mapping access, ``config_from_object`` reading); the Celery decisions are in
``celery_settings.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any

from ._normalize import NORMALIZED, content_type, seconds
from ._urls import check_url, redact
from .exceptions import ConfigurationError
from .message import CONTENT_TYPES

DEFAULT_BROKER_URL = "redis://localhost:6379/0"


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(name, f"must be a positive number, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(name, f"must be a positive integer, got {value!r}")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(name, f"must be a number >= 0, got {value!r}")


def _priority(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ConfigurationError(name, f"must be an integer from 0 (highest) to 9 (lowest), got {value!r}")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(name, f"must be true or false, got {value!r}")


def _name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value or any(c in value for c in "{}\n\r \x06"):
        raise ConfigurationError(name, f"must be a non-empty name without spaces or braces, got {value!r}")


def _broker_url(name: str, value: Any) -> None:
    if not isinstance(value, str):  # the value may hold a password: name its type only
        raise ConfigurationError(name, f"must be a URL string, got a {type(value).__name__}")
    if value != "memory://":
        check_url(value, name)


def _result_backend(name: str, value: Any) -> None:
    if value is None or value is False or value in ("", "disabled"):
        return
    _broker_url(name, value)


def _queue_shards(name: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024
        for k, v in value.items()
    ):
        raise ConfigurationError(name, "must map queue names to a number of shards (1 to 1024)")
    for queue in value:
        _name(name, queue)
        if "~" in queue:
            raise ConfigurationError(name, f"queue {queue!r}: '~' is reserved for shard names")


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(name, f"must be an integer >= 0, got {value!r}")


def _routes(name: str, value: Any) -> None:
    """Celery's forms: a dict of task name or glob -> queue name or ``{"queue": name}``, a router
    function ``(name, args, kwargs, options, task=None, **kw) -> dict | str | None``, or a list of
    those (tried in order)."""
    routers = value if isinstance(value, (list, tuple)) else [value]
    for router in routers:
        if callable(router):
            continue
        if not isinstance(router, Mapping) or not all(isinstance(k, str) for k in router):
            raise ConfigurationError(
                name,
                "must map task names or globs to queues ({'shop.*': 'shop'} or {'shop.*': {'queue': "
                "'shop'}}), or be a router function, or a list of those",
            )
        for target in router.values():
            queue = target.get("queue") if isinstance(target, Mapping) else target
            _name(name, queue)


def transport_options(conf: Config) -> dict[str, Any]:
    """Celery's ``broker_transport_options`` as given (``master_name``, ``sentinel_kwargs``: how to
    connect), read without loading the table of Celery's settings (``conf.broker_transport_options``
    reads them back with ``visibility_timeout``, which is ``lease_s``)."""
    options: dict[str, Any] = conf.__dict__.get("_transport_options", {})
    return options


_celery_settings: ModuleType | None = None


def _celery() -> ModuleType:
    """The table of Celery's settings (``celery_settings``), loaded when a name that is not
    celeriac's is met: an app that uses celeriac's names (and every worker) never loads it."""
    global _celery_settings
    if _celery_settings is None:  # then a global read per call, no import statement
        from . import celery_settings

        _celery_settings = celery_settings
    return _celery_settings


def _optional_seconds(name: str, value: Any) -> None:
    seconds(name, value, optional=True)


def _optional_positive_int(name: str, value: Any) -> None:
    if value is not None:
        _positive_int(name, value)


def _module_names(name: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(name, f"must be a list of module names, got {value!r}")
    for module in value:
        if not isinstance(module, str) or not _MODULE_NAME.fullmatch(module):
            raise ConfigurationError(name, f"{module!r} is not a module name (pkg.module)")


def _optional_serializer(name: str, value: Any) -> None:
    if value is not None:
        _serializer(name, value)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _queue_modules(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigurationError(name, f"must map queue names to lists of module names, got {value!r}")
    for queue, modules in value.items():
        _name(name, queue)
        if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
            raise ConfigurationError(
                name, f"queue {queue!r}: expected a list of module names, got {modules!r}"
            )
        for module in modules:
            if not isinstance(module, str) or not _MODULE_NAME.fullmatch(module):
                raise ConfigurationError(
                    name, f"queue {queue!r}: {module!r} is not a module name (pkg.module)"
                )


def _content_types(name: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError(name, f"must be a list of content types, got {value!r}")
    unknown = [v for v in value if content_type(v) not in CONTENT_TYPES]
    if unknown:
        raise ConfigurationError(name, f"unknown content type(s) {unknown!r}: use {list(CONTENT_TYPES)!r}")


def _serializer(name: str, value: Any) -> None:
    if content_type(value) not in CONTENT_TYPES:
        raise ConfigurationError(name, f"must be one of {list(CONTENT_TYPES)!r}, got {value!r}")


#: shortest signing key accepted (HMAC-SHA256 keys should hold at least 128 bits of randomness)
MIN_SIGNING_KEY_BYTES = 16


def _key_problem(value: Any) -> str | None:
    # never echo a key, even a wrong one: name its type or length only
    if not isinstance(value, (str, bytes)):
        return f"a key must be str or bytes, got a {type(value).__name__}"
    if len(value.encode() if isinstance(value, str) else value) < MIN_SIGNING_KEY_BYTES:
        return f"a key must be at least {MIN_SIGNING_KEY_BYTES} bytes long (use secrets.token_urlsafe(32))"
    return None


def _signing_key(name: str, value: Any) -> None:
    if value is None:
        return
    problem = _key_problem(value)
    if problem:
        raise ConfigurationError(name, problem)


def _signing_keys(name: str, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(name, f"must be a list of keys, got a {type(value).__name__}")
    for key in value:
        problem = _key_problem(key)
        if problem:
            raise ConfigurationError(name, problem)


def _words(name: str, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(name, f"must be a list of words, got a {type(value).__name__}")
    if not all(isinstance(w, str) and w for w in value):
        raise ConfigurationError(name, "must be a list of non-empty strings")


def _timezone(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigurationError(
            name, f"must be an IANA time zone name such as 'Europe/Paris', got {value!r}"
        )
    from .schedules import get_timezone

    get_timezone(value)


def _beat_schedule(name: str, value: Any) -> None:
    # entries are checked one by one, naming each, when a scheduler starts (celeriac.beat.entries)
    if not isinstance(value, Mapping):
        raise ConfigurationError(name, f"must map entry names to entries (dicts), got {value!r}")


Check = Callable[[str, Any], None]


def setting(
    default: Any = None,
    check: Check | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
    url: bool = False,
) -> Any:
    """Declare a setting: its default (or ``factory``), its validator, other names it answers to
    (in code and as ``CELERIAC_<ALIAS>``), and whether its value is a secret or a URL (redacted)."""
    if check is None:
        raise TypeError("every setting needs a validator (check=...)")
    metadata = {"check": check, "aliases": aliases, "secret": secret, "url": url}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(repr=False)
class Config:
    """Settings of one app. Assigning an attribute validates the new value.

    Attributes:
        broker_url: Redis URL (``redis://``, ``rediss://``, ``unix://``) or ``memory://`` for tests.
        result_backend: where results go; ``None`` means the broker's Redis, ``"disabled"`` means nowhere.
        queue_shards: queue name -> number of shards (streams, each its own hash slot) it is spread over.
        broker_wait_replicas: sends and settles return only once this many replicas hold them (WAIT).
        broker_wait_timeout_s: how long a send waits for those replicas before it fails.
        key_prefix: prefix of every Redis key celeriac writes.
        task_default_queue: queue of tasks with no ``queue=`` and no matching route.
        task_routes: task name or glob (``"shop.reports.*"``) -> queue (or ``{"queue": ...}``), a
            router function, or a list of those (Celery's forms).
        task_ignore_result: results are not stored unless a task or call asks (Celery: stored).
        task_store_errors_even_if_ignored: store failures even for tasks that ignore results.
        task_acks_late: ack after the outcome is recorded (at-least-once). ``False``: ack before running
            (at-most-once).
        task_always_eager: run tasks inline at send time, through the execution semantics every
            worker uses (:mod:`celeriac.execution`).
        task_eager_propagates: in eager mode, raise the task's exception from ``apply_async``.
        result_expires_s: time to live of stored results and errors.
        max_message_bytes: refuse to send an encoded message larger than this.
        max_deliveries: dead-letter a message handed out this many times without an outcome.
        lease_s: how long a delivery stays owned without renewal; a dead worker's tasks run again
            about this long after it died.
        dead_letter_max: cap on the entries of each queue's dead-letter stream.
        worker_ttl_s: liveness key TTL of a worker.
        worker_shutdown_grace_s: how long a warm shutdown lets running tasks finish.
        worker_fetch_max: most messages taken in one fetch.
        worker_queue_modules: queue name -> task modules a worker consuming that queue imports (lean
            workers: ``-Q scrape`` imports only what ``scrape`` needs; ``-I`` adds more).
        result_max_bytes: a result whose encoded size is larger fails its task with
            :class:`~celeriac.exceptions.ResultTooLarge`, stored instead of the value.
        accept_content: content types this app reads (``"msgpack"``, and ``"pickle"`` only when listed
            here: unpickling runs code chosen by whoever can write to Redis).
        task_serializer: content type of the arguments and results of tasks that do not set
            ``serializer=``: ``"msgpack"``, or ``"pickle"`` (which ``accept_content`` must list).
        message_signing_key: when set, every message sent is signed (HMAC-SHA256) with this key and
            only correctly signed messages run; unsigned or tampered ones are dead-lettered.
        message_signing_keys: older keys still accepted (key rotation); new messages are always signed
            with ``message_signing_key``.
        monitor_events: workers record every task outcome for the dashboard and ``/metrics``
            (``celeriac worker --without-events`` turns it off for one worker). See docs/monitoring.md.
        monitor_max_entries: most task outcomes kept per queue (distinct task ids; oldest go first).
        monitor_max_failures: most failures kept per queue, with traceback and arguments.
        monitor_retention_days: outcomes, failures and hourly/daily rollups older than this go.
        monitor_max_arg_chars: a failed task's arguments are recorded cut to this many characters.
        monitor_redact: keyword-argument names (substrings, case-insensitive) recorded as ``'***'``,
            besides the built-in ones (password, secret, token, api_key, authorization, cookie).
        timezone: IANA time zone of crontab entries (``"Europe/Paris"``); None: UTC, or the local
            zone of the machine when ``enable_utc`` is false (Celery's rule).
        enable_utc: with no ``timezone``, read crontab entries in UTC (True) or in local time.
        beat_schedule: periodic entries (Celery's format; see docs/periodic-and-limits.md).
        task_default_priority: priority of messages whose task and call set none: 0 (highest, the
            default, as Celery on Redis) .. 9 (lowest).
        unique_default_s: how long a unique task's lock is held at most when neither the call nor the
            task gives ``unique_for`` (a call with only ``unique_key=``).
        revoke_expires_s: how long a revocation stays in force (a task revoked while delayed longer
            than this may still run); also the revocation stream's trim age.
        revoked_max: at most this many revocations are kept (oldest dropped first).
        progress_interval_s: ``update_state`` writes at most once per this interval per task (latest
            wins); 0 writes every call.
        task_time_limit, task_soft_time_limit: default limits (seconds) of tasks that set none.
        task_reject_on_worker_lost: with acks_late, a task whose process died runs again; False:
            it fails with WorkerLostError (Celery's default).
        worker_concurrency: default of ``-c``.
        worker_prefetch_multiplier: accepted for Celery; celeriac never takes more than free slots.
        worker_max_tasks_per_child, worker_max_memory_per_child: defaults of the recycling flags
            (memory in KiB).
        broker_pool_limit: most pooled connections a producer's broker client holds (None: unbounded).
        imports, include: task modules a worker imports at start, besides ``-I``.
        result_serializer: must equal ``task_serializer`` when set (results travel in their task's
            content type).
    """

    broker_url: str = setting(DEFAULT_BROKER_URL, _broker_url, url=True)
    result_backend: str | None = setting(None, _result_backend, url=True)
    key_prefix: str = setting("celeriac", _name)
    task_default_queue: str = setting("default", _name)
    task_routes: Any = setting(check=_routes, factory=dict)  # noqa: RUF009 - a field()
    task_ignore_result: bool = setting(True, _boolean)
    task_store_errors_even_if_ignored: bool = setting(True, _boolean)
    task_acks_late: bool = setting(True, _boolean)
    task_always_eager: bool = setting(False, _boolean)
    task_eager_propagates: bool = setting(False, _boolean)
    result_expires_s: float = setting(86_400.0, _positive)
    max_message_bytes: int = setting(1 << 20, _positive_int)
    max_deliveries: int = setting(5, _positive_int)
    lease_s: float = setting(10.0, _positive)
    dead_letter_max: int = setting(10_000, _positive_int)
    worker_ttl_s: float = setting(10.0, _positive)
    worker_shutdown_grace_s: float = setting(60.0, _positive)
    worker_fetch_max: int = setting(500, _positive_int)
    worker_queue_modules: dict[str, list[str]] = setting(check=_queue_modules, factory=dict)  # noqa: RUF009
    result_max_bytes: int = setting(1 << 20, _positive_int)
    accept_content: tuple[str, ...] = setting(("msgpack",), _content_types)
    task_serializer: str = setting("msgpack", _serializer)
    message_signing_key: str | bytes | None = setting(None, _signing_key, secret=True)
    message_signing_keys: tuple[str | bytes, ...] = setting((), _signing_keys, secret=True)
    monitor_events: bool = setting(True, _boolean)
    monitor_max_entries: int = setting(1_000_000, _positive_int)
    monitor_max_failures: int = setting(100_000, _positive_int)
    monitor_retention_days: float = setting(7.0, _positive)
    monitor_max_arg_chars: int = setting(1_000, _positive_int)
    monitor_redact: tuple[str, ...] = setting((), _words)
    timezone: str | None = setting(None, _timezone)
    enable_utc: bool = setting(True, _boolean)
    beat_schedule: dict[str, Any] = setting(check=_beat_schedule, factory=dict)  # noqa: RUF009
    # scale (issue 14): Sentinel, sharded queues, durable sends, connection bounds
    queue_shards: dict[str, int] = setting(check=_queue_shards, factory=dict)  # noqa: RUF009
    broker_wait_replicas: int = setting(0, _non_negative_int)
    broker_wait_timeout_s: float = setting(5.0, _positive)
    task_default_priority: int = setting(0, _priority)
    unique_default_s: float = setting(3600.0, _positive)
    revoke_expires_s: float = setting(86_400.0, _positive)
    revoked_max: int = setting(100_000, _positive_int)
    progress_interval_s: float = setting(0.1, _non_negative)
    # Celery's names, with Celery's meaning (celery_settings.py holds the decision for each)
    task_time_limit: float | None = setting(None, _optional_seconds)
    task_soft_time_limit: float | None = setting(None, _optional_seconds)
    task_reject_on_worker_lost: bool = setting(True, _boolean)
    worker_concurrency: int | None = setting(None, _optional_positive_int)
    worker_prefetch_multiplier: int = setting(1, _optional_positive_int)
    worker_max_tasks_per_child: int | None = setting(None, _optional_positive_int)
    worker_max_memory_per_child: int | None = setting(None, _optional_positive_int)
    broker_pool_limit: int | None = setting(10, _optional_positive_int)
    imports: tuple[str, ...] = setting((), _module_names)
    include: tuple[str, ...] = setting((), _module_names)
    result_serializer: str | None = setting(None, _optional_serializer)

    def __repr__(self) -> str:
        """Every setting, with URL passwords and signing keys hidden."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                shown = "'***'" if not isinstance(value, (list, tuple)) else f"['***' x {len(value)}]"
            elif f.metadata["url"] and isinstance(value, str):
                shown = repr(redact(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Config({', '.join(parts)})"

    def __setattr__(self, name: str, value: Any) -> None:
        name = _canonical(name)
        if name in _CHECKS:  # celeriac's own name: celery_settings' decision is this one
            normalize = NORMALIZED.get(name)
            self._store(name, value if normalize is None else normalize(name, value))
            return
        cs = _celery()
        decided = cs.decision(name, _CHECKS)
        if isinstance(decided, cs.Honoured) and (decided.convert is not None or decided.target != name):
            converted = decided.convert(name, value) if decided.convert else {decided.target: value}
            for target, item in converted.items():
                if target.startswith("_"):  # kept to be read back under Celery's name
                    self.__dict__[target] = item
                    for listener in self.__dict__.get("_listeners", ()):
                        listener(name)  # e.g. the Sentinel master_name: the app's broker changes
                else:
                    self._store(target, item)
            return
        if isinstance(decided, (cs.Refused, cs.Fixed)):
            if isinstance(decided, cs.Refused) or not decided.accepts(value):
                raise cs.refusal(name, decided, value)
            self.__dict__.setdefault("_fixed", {})[name] = value
            return
        self._store(name, value)

    def _store(self, name: str, value: Any) -> None:
        check = _CHECKS.get(name)
        if check is None:
            raise ConfigurationError(
                name,
                "unknown setting (neither a celeriac nor a Celery setting; see docs/configuration.md)",
            )
        check(name, value)
        object.__setattr__(self, name, value)
        for listener in self.__dict__.get("_listeners", ()):
            listener(name)

    def __getattr__(self, name: str) -> Any:  # only called for names not found: aliases, Celery's names
        if name.startswith("__"):
            raise AttributeError(name)
        canonical = _canonical(name)
        if canonical in _CHECKS:
            return getattr(self, canonical)
        cs = _celery()
        decided = cs.decision(canonical, _CHECKS)
        if isinstance(decided, cs.Honoured):
            return decided.read(self) if decided.read else getattr(self, decided.target)
        if isinstance(decided, cs.Fixed):
            return self.__dict__.get("_fixed", {}).get(canonical, decided.default)
        if isinstance(decided, cs.Refused):
            raise AttributeError(f"{name}: Celery setting not supported by celeriac: {decided.reason}")
        raise AttributeError(name)

    # Celery's conf is also a mapping: app.conf["task_acks_late"], "x" in app.conf, app.conf.get(...)
    def __getitem__(self, name: str) -> Any:
        if name.startswith("_"):
            return self.__dict__[name]
        try:
            return getattr(self, name)
        except AttributeError as exc:
            raise KeyError(str(exc)) from None

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def get(self, name: str, default: Any = None) -> Any:
        """``conf[name]``, or ``default`` when it is neither a celeriac nor a supported Celery setting."""
        try:
            return self[name]
        except KeyError:
            return default

    def setdefault(self, name: str, value: Any) -> Any:
        """Celery's ``conf.setdefault``: settings always have a value here, so this returns it."""
        return self[name]

    def __getstate__(self) -> dict[str, Any]:
        # the listeners belong to the app in this process (a pickled copy goes to a lean fork server)
        return {k: v for k, v in self.__dict__.items() if k != "_listeners"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(setting_name)`` after each change (the app rebuilds what depends on it)."""
        self.__dict__.setdefault("_listeners", []).append(listener)

    def update(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Set several settings at once (each validated)."""
        for name, value in {**(values or {}), **kwargs}.items():
            setattr(self, name, value)

    def from_object(self, obj: Any, *, namespace: str | None = None) -> None:
        """Celery's ``config_from_object``: every upper-case attribute (or, with ``namespace="CELERY"``,
        every ``CELERY_``-prefixed one, read as its lower-case name) of a module or object; with no
        namespace, lower-case attributes that are settings too (a ``celeryconfig`` module).

        Raises:
            ConfigurationError: a setting is invalid or not supported (the error names it).
        """
        self.update(settings_of(obj, namespace))

    @property
    def results_enabled(self) -> bool:
        return self.result_backend not in (False, "", "disabled")

    @property
    def result_url(self) -> str:
        """The URL results are stored at (the broker's unless ``result_backend`` is set)."""
        return (
            self.result_backend
            if isinstance(self.result_backend, str) and self.results_enabled
            else self.broker_url
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Settings from ``CELERIAC_*`` environment variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in (f.name, *(alias for alias, c in _ALIASES.items() if c == f.name)):
                raw = env.get(f"CELERIAC_{name.upper()}")
                if raw is not None:
                    values[f.name] = _parse_env(f.name, raw, getattr(_DEFAULTS, f.name))
                    break
        values.update({_ALIASES.get(k, k): v for k, v in overrides.items()})
        config = cls()
        config.update(values)
        return config


def _parse_env(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(name, f"CELERIAC_{name.upper()}={raw!r} is not a boolean")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(name, f"CELERIAC_{name.upper()}={raw!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(name, f"CELERIAC_{name.upper()}={raw!r} is not a number") from None
    if isinstance(default, dict):
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigurationError(name, f"CELERIAC_{name.upper()} is not JSON") from None
    if default is None and re.fullmatch(r"\d+(\.\d+)?", raw.strip()):  # a number where None means unset
        return float(raw) if "." in raw else int(raw)
    if isinstance(default, tuple):  # a comma-separated list
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name.islower():  # Celery's old names (celery_settings.OLD_NAMES) are all upper case
        return name
    old_names: dict[str, str] = _celery().OLD_NAMES
    return old_names.get(name, name)


def settings_of(obj: Any, namespace: str | None = None) -> dict[str, Any]:
    """The settings a module or object holds, as Celery's ``config_from_object`` reads them."""
    if isinstance(obj, Mapping):
        items = dict(obj)
    else:
        wanted = namespace.rstrip("_") + "_" if namespace else ""
        # only the names read below: Django's settings raise on reading some (an empty SECRET_KEY)
        items = {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_") and k.startswith(wanted)}
    out: dict[str, Any] = {}
    decision, old_names = _celery().decision, _celery().OLD_NAMES
    if namespace:
        prefix = namespace.rstrip("_") + "_"
        for key, value in items.items():
            if not key.startswith(prefix):
                continue
            lower = key[len(prefix) :].lower()
            # CELERY_TASK_ACKS_LATE -> task_acks_late; an old name (CELERY_ALWAYS_EAGER) as such
            if lower in _CHECKS or lower in _ALIASES or decision(lower, _CHECKS) is not None:
                out[lower] = value
            elif key in old_names:
                out[key] = value
            else:
                out[lower] = value  # unknown: the error names it
        return out
    for key, value in items.items():
        if key.isupper() and (key in old_names or key.lower() in _CHECKS):
            out[key if key in old_names else key.lower()] = value
        elif key.isupper() and (key.startswith(("CELERY", "BROKER_")) or key.lower() in _CHECKS):
            out[key.lower()] = value  # unknown: the error names it
        elif key.islower() and (key in _CHECKS or decision(key, _CHECKS) is not None):
            out[key] = value
    return out


_CHECKS: dict[str, Check] = {f.name: f.metadata["check"] for f in fields(Config)}
_ALIASES: dict[str, str] = {alias: f.name for f in fields(Config) for alias in f.metadata["aliases"]}
_DEFAULTS = Config()


def celery_table() -> str:
    """The Markdown table of every Celery setting and what celeriac does with it (docs/configuration.md)."""
    table: str = _celery().markdown_table(_CHECKS)
    return table
