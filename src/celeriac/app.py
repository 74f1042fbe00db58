"""The app: configuration, the task registry, and the one send path.

``Task.apply_async -> Celeriac.send -> Broker.enqueue``: the app encodes the message, checks its size,
routes it and hands the bytes to the broker. It never touches the result store when sending.

Why this module is long: it is the app's whole public surface and the one send path (send, send_many
with its bulk fast path, unique and prioritized sends, eager mode, and the entry points of task
control and workflows), kept together so that it reads top to bottom; Celery's app methods live in
``_app_celery.py``.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, overload

from . import _registry
from . import signals as _signals
from ._app_celery import CeleryMethods, apply_router, publish_signal
from ._clock import SYSTEM_CLOCK, wall_ms
from ._signal import PeriodicSetup
from .broker.base import Broker, Enqueue, ResultSettling
from .codec import Codec
from .config import Config, transport_options
from .exceptions import ConfigurationError, MessageTooLarge
from .execution import effective
from .message import Message, encode_call, new_task_id
from .result import AsyncResult as _AsyncResult
from .result import EagerResult
from .results.base import ResultBackend
from .task import CLASS_OPTIONS, NO_OPTIONS, AsyncTask, SendOptions, Task, build_message, unique_digest

if TYPE_CHECKING:
    from ._clock import Clock
    from .canvas import Signature
    from .control import Control
    from .outcomes import OutcomeEvent
    from .tracing import Tracing

P = ParamSpec("P")
R = TypeVar("R")


class _TaskDecorator(Protocol):
    """``@app.task(**options)``: keeps the function's parameter and return types (``Task[P, R]``;
    ``R`` is what an async function's coroutine returns)."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _BoundTaskDecorator(Protocol):
    """``@app.task(bind=True, ...)``: the function's first parameter is the task itself, not sent."""

    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], Awaitable[R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...


# settings the derived objects are built from: a change rebuilds them on next use
_BROKER_SETTINGS = frozenset(
    {"broker_url", "key_prefix", "dead_letter_max", "revoke_expires_s", "revoked_max"}
) | {
    "broker_transport_options",
    "queue_shards",
    "broker_wait_replicas",
    "broker_wait_timeout_s",
    "broker_pool_limit",
}
_BACKEND_SETTINGS = frozenset({"broker_url", "result_backend", "key_prefix", "broker_transport_options"})
_CODEC_SETTINGS = frozenset(
    {"accept_content", "message_signing_key", "message_signing_keys", "result_max_bytes"}
)


class Celeriac(CeleryMethods, PeriodicSetup):
    """A celeriac application.

    Args:
        main: the app's name; tasks defined in ``__main__`` are named ``<main>.<function>``.
        broker: broker URL (``redis://host:6379/0``, ``rediss://...``, ``memory://``), or a broker
            object (``MemoryBroker(...)``, a ``RedisBroker`` built with other options). Default: the
            ``CELERIAC_BROKER_URL`` environment variable, else ``redis://localhost:6379/0``.
        result_backend: result store URL, or a result store object; default the broker's Redis
            (``conf.broker_url``); ``"disabled"`` for none.
        clock: the clock every part of this app reads (countdowns, ``expires``, expiry checks, the
            in-memory broker and result store); default the system clock. Tests pass a
            :class:`~celeriac.testing.FakeClock`.
        from_env: read ``CELERIAC_*`` environment variables (default); tests pass False so that a
            developer's shell cannot change them.
        backend: Celery's name for ``result_backend``.
        include: task modules a worker of this app imports at start (Celery's ``include=``).
        set_as_current: make this the current app (``celeriac.current_app``; default, as in Celery).
        **settings: any :class:`~celeriac.config.Config` setting (``task_routes=...``, ``lease_s=...``),
            or a Celery setting name (``docs/configuration.md`` says what each does here).

    Raises:
        ConfigurationError: a setting has an invalid value.
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | Broker | None = None,
        result_backend: str | ResultBackend | None = None,
        clock: Clock | None = None,
        from_env: bool = True,
        backend: str | ResultBackend | None = None,
        include: Sequence[str] | None = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        if backend is not None:
            if result_backend is not None:
                raise ConfigurationError("backend", "give backend= or result_backend=, not both")
            result_backend = backend
        overrides = dict(settings)
        if include is not None:
            overrides["include"] = tuple(include)
        if broker is not None and not isinstance(broker, Broker):
            overrides["broker_url"] = broker  # validated: a URL string
        if result_backend is not None and not isinstance(result_backend, ResultBackend):
            overrides["result_backend"] = result_backend
        self.main = main
        self.conf = Config.from_env({} if not from_env else None, **overrides)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        # given objects are kept until the setting they stand for changes (see _setting_changed)
        self._broker: Broker | None = broker if isinstance(broker, Broker) else None
        self._backend: ResultBackend | None = (
            result_backend if isinstance(result_backend, ResultBackend) else None
        )
        self._broker_given = self._broker is not None
        self._backend_given = self._backend is not None
        self._codec: Codec | None = None
        self._workflow_store: Any = None  # celeriac.workflow's Redis store, made on first use
        self._control: Control | None = None
        #: OpenTelemetry spans for sends and runs (``celeriac.tracing.instrument``); None: off
        self.tracing: Tracing | None = None
        #: called by workers with each task outcome (see :meth:`on_outcome`)
        self.outcome_handlers: list[Callable[[OutcomeEvent], None]] = []
        self.conf.on_change(self._setting_changed)
        #: packages whose ``tasks`` modules a worker imports (autodiscover_tasks), or a callable giving them
        self._autodiscover: list[tuple[Any, str]] = []
        _registry.apps.add(self)
        if set_as_current:
            _registry.set_current(self)
        for fn, options in list(_registry.shared):
            self.register_shared(fn, options)
        if os.environ.get("DJANGO_SETTINGS_MODULE"):
            # Celery's Django fix-up, loaded by name as Celery loads its fix-ups: the app does not
            # depend on contrib; the fix-up only connects signal receivers (celeriac/contrib/django.py)
            importlib.import_module("celeriac.contrib.django").fixup(self)
        self.workflow.register_builtins(self)

    def _setting_changed(self, name: str) -> None:
        """Rebuild what depends on a changed setting (on next use): nothing keeps a stale value."""
        if name in _CODEC_SETTINGS:
            self._codec = None
        if self._broker is not None and (
            name == "broker_url" or (name in _BROKER_SETTINGS and not self._broker_given)
        ):
            self._broker.close_sync()
            self._broker, self._broker_given = None, False
        if self._backend is not None and (
            name == "result_backend" or (name in _BACKEND_SETTINGS and not self._backend_given)
        ):
            self._backend.close_sync()
            self._backend, self._backend_given = None, False

    def __repr__(self) -> str:
        return f"<Celeriac {self.main or ''}>"

    @property
    def workflow(self) -> Any:
        """The workflow engine (:mod:`celeriac.workflow`): signatures reach it through their app."""
        from . import workflow

        return workflow

    # ---- tasks -----------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> AsyncTask[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: None = None, /, *, bind: Literal[True], **options: Any) -> _BoundTaskDecorator: ...
    @overload
    def task(self, fn: None = None, /, **options: Any) -> _TaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a function (sync or async) as a task: ``@app.task`` or ``@app.task(**options)``.

        Options: ``name``, ``bind``, ``base`` (a :class:`Task` subclass: its hooks run with the task,
        its class attributes are defaults of these options), ``serializer`` (``"msgpack"``,
        ``"json"`` or ``"pickle"``; default the app's ``task_serializer``), ``queue``,
        ``ignore_result``, ``max_retries``, ``default_retry_delay``, ``autoretry_for``,
        ``dont_autoretry_for``, ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``,
        ``acks_late``, ``result_expires``, ``time_limit``, ``soft_time_limit``, ``typing``.
        """

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            base = options.pop("base", None)
            if base is not None and not (isinstance(base, type) and issubclass(base, Task)):
                raise ConfigurationError(f"@app.task(base=...) of {func}", f"{base!r} is not a Task subclass")
            if base is not None:  # class-level defaults of a Celery-style base class
                for option in CLASS_OPTIONS:
                    if option not in options and option in _class_attributes(base):
                        options[option] = getattr(base, option)
            name = options.pop("name", None) or self._default_name(func)
            if name in self.tasks and self.tasks[name].fn is not func:
                raise ConfigurationError("task name", f"two different functions are registered as {name!r}")
            try:
                kind = base or (AsyncTask if inspect.iscoroutinefunction(func) else Task)
                task: Task[Any, Any] = kind(self, func, name=name, **options)
            except (TypeError, ConfigurationError) as exc:  # an unknown option, or a bad value
                raise ConfigurationError(f"@app.task options of {name}", str(exc)) from None
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else register

    def on_outcome(self, fn: Callable[[OutcomeEvent], None], /) -> Callable[[OutcomeEvent], None]:
        """Register ``fn`` (a decorator): workers call it with each task outcome once it is recorded
        (succeeded, failed, retried, dead-lettered, revoked, expired), on their event loop. Keep it
        quick; an exception it raises is logged. For custom exporters (see ``celeriac.outcomes``)."""
        self.outcome_handlers.append(fn)
        return fn

    def _default_name(self, fn: Callable[..., Any]) -> str:
        module = getattr(fn, "__module__", None) or "__main__"
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fn.__qualname__}"

    # ---- broker and results ----------------------------------------------------------------------
    @property
    def broker(self) -> Broker:
        """The broker: the one given, or one created from ``conf.broker_url`` on first use (and again
        after a change of ``broker_url``, ``key_prefix`` or ``dead_letter_max``)."""
        if self._broker is None:
            url = self.conf.broker_url
            if url == "memory://":
                from .broker.memory import MemoryBroker

                broker = MemoryBroker(
                    dead_letter_max=self.conf.dead_letter_max,
                    clock=self.clock.time,
                    revoke_expires_s=self.conf.revoke_expires_s,
                    revoked_max=self.conf.revoked_max,
                )
                subscribe = getattr(self.clock, "subscribe", None)
                if subscribe is not None:  # a fake clock: moving it wakes the broker's waiters
                    subscribe(broker.time_changed)
                self._broker = broker
            else:
                from .broker.redis import RedisBroker

                self._broker = RedisBroker.from_conf(url, self.conf)
        return self._broker

    @property
    def backend(self) -> ResultBackend | None:
        """The result backend, or None when results are disabled."""
        if self._backend is None and self.conf.results_enabled:
            url = self.conf.result_url
            if url == "memory://":
                from .results.memory import MemoryResultBackend

                self._backend = MemoryResultBackend(clock=self.clock.time)
            else:
                from .results.redis import RedisResultBackend

                self._backend = RedisResultBackend(
                    url, prefix=self.conf.key_prefix, transport_options=transport_options(self.conf)
                )
        return self._backend

    @property
    def control(self) -> Control:
        """Task control: ``app.control.revoke(task_id, terminate=False, signal="SIGTERM")``."""
        if self._control is None:
            from .control import Control

            self._control = Control(self)
        return self._control

    def results_travel_with(self, consumer: object) -> bool:
        """True when ``consumer`` (a worker's broker) writes results atomically with its fenced acks:
        it has that capability and this app's result store lives where it would write them."""
        backend = self.backend
        if backend is None or not isinstance(consumer, ResultSettling):
            return False
        location = backend.location()
        return location is not None and location == consumer.results_location()

    @property
    def codec(self) -> Codec:
        """Encodes and decodes this app's messages and results under its current settings
        (content types, signing keys, result size limit; rebuilt when one of them changes)."""
        if self._codec is None:
            self._codec = Codec.from_config(self.conf)
        return self._codec

    def startup_warnings(self) -> list[str]:
        """Warnings a worker of this app logs when it starts (risky security settings)."""
        warnings = []
        if "pickle" in self.conf.accept_content:
            warnings.append(
                "accept_content includes 'pickle': unpickling a message runs code chosen by whoever can "
                "write to this Redis"
                + (
                    "; messages are signed (message_signing_key), so only key holders can"
                    if self.conf.message_signing_key is not None
                    else "; protect Redis (ACL, TLS) and consider message_signing_key"
                )
            )
        return warnings

    def AsyncResult(self, task_id: str) -> _AsyncResult[Any]:
        """A handle on the result of the task with this id."""
        return _AsyncResult(task_id, self)

    # ---- sending ---------------------------------------------------------------------------------
    def route(
        self,
        name: str,
        task: Task[Any, Any] | None = None,
        queue: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The queue a task goes to: ``queue=``, then ``task_routes`` (in any of Celery's forms: exact
        names before globs within a dict, routers of a list in order, a router function called with
        ``(name, args, kwargs, options, task=task)``), then the task's own ``queue``, then
        ``task_default_queue``."""
        if queue:
            return queue
        routes = self.conf.task_routes
        if routes:  # none (the default): no router to ask, on every send
            for router in routes if isinstance(routes, (list, tuple)) else (routes,):
                found = apply_router(router, name, args, kwargs or {}, task)
                if found:
                    return found
        if task is not None and task.queue:
            return task.queue
        return self.conf.task_default_queue

    @property
    def _routes_static(self) -> bool:
        """True when routing depends on the task name only (no router function): cacheable per task."""
        routes = self.conf.task_routes
        return not any(callable(r) for r in (routes if isinstance(routes, (list, tuple)) else (routes,)))

    def _prepare(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SendOptions,
        task: Task[Any, Any] | None,
        trace: dict[str, str] | None = None,
    ) -> tuple[Message, bytes, Task[Any, Any] | None]:
        task = task or self.tasks.get(name)
        if task is not None:
            message = task.build_message(args, kwargs, options)
        else:
            message = build_message(name, args, kwargs, options)
        if trace:  # W3C trace context of the send span (celeriac.tracing)
            message = replace(
                message, traceparent=trace.get("traceparent"), tracestate=trace.get("tracestate")
            )
        if options.delay_ms is not None and message.eta_ms is None:
            message = replace(message, eta_ms=wall_ms(self.clock) + options.delay_ms)
        serializer = self._serializer(task)
        if serializer != "msgpack":
            message = replace(message, serializer=serializer)
        return message, self._checked_size(self.codec.encode(message)), task

    def _checked_size(self, data: bytes) -> bytes:
        """``data``, or :class:`MessageTooLarge` when it exceeds ``max_message_bytes``."""
        if len(data) > self.conf.max_message_bytes:
            raise MessageTooLarge(len(data), self.conf.max_message_bytes)
        return data

    def _serializer(self, task: Task[Any, Any] | None) -> str:
        return (task.serializer if task is not None else None) or self.conf.task_serializer

    def _ignored(self, options: SendOptions, task: Task[Any, Any] | None) -> bool:
        if task is None:  # sent by name: the worker knows; do not refuse to wait
            return bool(options.ignore_result)
        # the rule's one home (issue 10: call option, else task option, else the app's default)
        return effective(options.ignore_result, task.ignore_result, self.conf.task_ignore_result)

    def send(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SendOptions,
        *,
        task: Task[Any, Any] | None = None,
    ) -> _AsyncResult[Any]:
        """Encode, check and enqueue one task invocation (one Redis round trip).

        In eager mode (``task_always_eager``) the task runs here instead (:mod:`celeriac.eager`).
        """
        if self.tracing is not None:  # a PRODUCER span; its context travels in the message
            with self.tracing.send(name, self.route(name, task, options.queue)) as (span, trace):
                result = self._send(name, args, kwargs, options, task, trace)
                span.set_attribute("messaging.message.id", result.id)
                return result
        return self._send(name, args, kwargs, options, task)

    def _send(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SendOptions,
        task: Task[Any, Any] | None,
        trace: dict[str, str] | None = None,
    ) -> _AsyncResult[Any]:
        task = task or self.tasks.get(name)
        level, unique_ttl_ms = 0, 0
        if (
            options is not NO_OPTIONS
            or (task is not None and task.controlled)
            or self.conf.task_default_priority
        ):
            options, level, unique_ttl_ms = self._control_options(name, args, kwargs, options, task)
        message, data, task = self._prepare(name, args, kwargs, options, task, trace)
        if self.conf.task_always_eager:
            return self._eager(data, message)
        queue = self.route(name, task, options.queue, args, kwargs)
        item = Enqueue(queue, data, options.delay_ms, options.eta_ms)
        task_id = message.id
        publishing = _signals.before_task_publish.receivers or _signals.after_task_publish.receivers
        if publishing:
            publish_signal(_signals.before_task_publish, message, queue)
        if level or options.unique_key is not None:
            task_id = self.broker.enqueue_one(
                item, task_id=task_id, level=level, unique_key=options.unique_key, unique_ttl_ms=unique_ttl_ms
            )
        else:
            self.broker.enqueue(item)
        if publishing:
            publish_signal(_signals.after_task_publish, message, queue)
        return _AsyncResult(task_id, self, ignored=self._ignored(options, task))

    def _control_options(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SendOptions,
        task: Task[Any, Any] | None,
    ) -> tuple[SendOptions, int, int]:
        """``(options with the unique key filled in, priority level, unique lock TTL in ms)``.

        The level: the call's ``priority``, else the task's, else ``task_default_priority``. A call is
        unique when it gives ``unique_key`` or when ``unique_for`` is set (call or task); its key is
        then ``unique_key`` or the digest of the task name and arguments (``unique_digest``).
        """
        level = options.priority
        if level is None:
            level = task.priority if task is not None and task.priority is not None else None
        if level is None:
            level = self.conf.task_default_priority
        unique_for = options.unique_for_s
        if unique_for is None and task is not None:
            unique_for = task.unique_for
        if options.unique_key is None and unique_for is not None:
            options = replace(options, unique_key=unique_digest(name, args, kwargs))
        ttl_ms = 0
        if options.unique_key is not None:
            ttl_ms = int((unique_for if unique_for is not None else self.conf.unique_default_s) * 1000)
        return options, level, ttl_ms

    def send_task(
        self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> _AsyncResult[Any]:
        """Send a task by name, without importing it. The worker applies the task's declared options
        unless given here. Routing uses ``queue=`` or ``task_routes`` (the task's own ``queue`` is not
        known without importing it)."""
        from .task import normalize_options

        return self.send(
            name, tuple(args), dict(kwargs or {}), normalize_options(**options, now_s=self.clock.time)
        )

    def send_many(self, signatures: Iterable[Signature]) -> list[_AsyncResult[Any]]:
        """Send many tasks in pipelined round trips (bulk enqueue).

        Every signature is checked and encoded before anything is sent: a bad one raises and sends
        nothing. Then chunks of 1,000 go out back to back. A connection error while sending raises;
        the chunks sent before it stay queued.
        """
        # Python's cyclic garbage collector is paused meanwhile: this creates no reference cycles, and
        # with hundreds of thousands of new objects alive it would scan them again and again (a large
        # share of a bulk send: docs/design.md). Restored at once afterwards, whatever happens.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            if self.tracing is not None:  # one PRODUCER span for the batch; each message carries it
                batch = list(signatures)
                with self.tracing.send_batch(len(batch)) as trace:
                    return self._send_many(batch, trace)
            return self._send_many(signatures)
        finally:
            if paused:
                gc.enable()

    def _send_many(
        self, signatures: Iterable[Signature], trace: dict[str, str] | None = None
    ) -> list[_AsyncResult[Any]]:
        from .task import normalize_options

        items: list[Enqueue] = []
        results: list[_AsyncResult[Any]] = []
        eager = self.conf.task_always_eager
        signing_key = self.codec.signing_key
        # with a publish signal receiver every message takes the general path (a Message to report)
        publishing = bool(_signals.before_task_publish.receivers or _signals.after_task_publish.receivers)
        published: list[tuple[Message, str]] = []
        # per task, for signatures without options: (queue, ignore_result, msgpack arguments), the
        # same for each of them; msgpack tasks then skip the Message object (encode_call)
        plain: dict[tuple[str, int], tuple[str, bool, bool]] = {}
        static_routes = self._routes_static
        # unique or prioritized sends: (item, task id, level, unique key, lock ttl, result to update)
        special: list[tuple[Enqueue, str, int, str | None, int, _AsyncResult[Any]]] = []
        default_level = self.conf.task_default_priority
        general = bool(eager or trace or publishing or default_level)  # every signature: the general path
        controlled: dict[int, bool] = {}  # per task (its id): Task.controlled, asked once per call
        for sig in signatures:
            # the dict's fields read directly (Signature's properties are a call each: this loop runs
            # for every message of a bulk send)
            task = sig._type if sig._type is not None else sig.type
            kwargs = sig["kwargs"]
            if type(kwargs) is not dict:
                kwargs = dict(kwargs)  # encoded at once: no copy of a plain dict
            if task is not None:
                is_controlled = controlled.get(id(task))
                if is_controlled is None:
                    is_controlled = controlled[id(task)] = task.controlled
            else:
                is_controlled = False
            if general or sig["options"] or is_controlled:
                options = (
                    normalize_options(**sig.options, now_s=self.clock.time) if sig.options else NO_OPTIONS
                )
                level, ttl_ms = 0, 0
                if not eager:
                    options, level, ttl_ms = self._control_options(
                        sig.name, tuple(sig.args), kwargs, options, task or self.tasks.get(sig.name)
                    )
                message, data, task = self._prepare(sig.name, tuple(sig.args), kwargs, options, task, trace)
                if eager:
                    results.append(self._eager(data, message))
                    continue
                queue = self.route(sig.name, task, options.queue, sig.args, kwargs)
                ignored = self._ignored(options, task)
                if publishing:
                    publish_signal(_signals.before_task_publish, message, queue)
                    published.append((message, queue))
                item = Enqueue(queue, data, options.delay_ms, options.eta_ms)
                result: _AsyncResult[Any] = _AsyncResult(message.id, self, ignored=ignored)
                if level or options.unique_key is not None:
                    # sent one by one after the bulk (each decides against Redis state)
                    special.append((item, message.id, level, options.unique_key, ttl_ms, result))
                else:
                    items.append(item)
                results.append(result)
                continue
            name = sig["task"]
            key = (name, id(task))
            policy = plain.get(key)
            if policy is None:
                serializer = self._serializer(task)
                policy = plain[key] = (
                    self.route(name, task),
                    self._ignored(NO_OPTIONS, task),
                    task is not None and serializer == "msgpack",
                )
            queue, ignored, direct = policy
            args = sig["args"]
            if type(args) is not tuple:
                args = tuple(args)
            if not static_routes:
                queue = self.route(name, task, None, args, kwargs)
            if direct:
                assert task is not None
                task.check_arguments(args, kwargs)
                task_id = new_task_id()
                data = self._checked_size(encode_call(task_id, name, args, kwargs, signing_key))
            else:
                message, data, task = self._prepare(name, args, kwargs, NO_OPTIONS, task)
                task_id = message.id
            items.append(Enqueue(queue, data))
            results.append(_AsyncResult(task_id, self, ignored=ignored))
        if items:
            self.broker.enqueue_many(items)
        for item, task_id, level, unique_key, ttl_ms, result in special:
            result.id = self.broker.enqueue_one(
                item, task_id=task_id, level=level, unique_key=unique_key, unique_ttl_ms=ttl_ms
            )
        for message, queue in published:
            publish_signal(_signals.after_task_publish, message, queue)
        return results

    # ---- eager -----------------------------------------------------------------------------------
    def run_eager(self, message: Message, task: Task[Any, Any] | None = None) -> EagerResult[Any]:
        """Run a message inline (eager mode), with a serialization round trip."""
        serializer = self._serializer(task)
        if serializer != "msgpack" and message.serializer is None:
            message = replace(message, serializer=serializer)
        return self._eager(self._checked_size(self.codec.encode(message)), message)

    def _eager(self, data: bytes, message: Message) -> EagerResult[Any]:
        from .eager import run_message

        return run_message(self, data, message)

    # ---- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the producer-side connections (the app can still be used: they reopen on demand)."""
        if self._broker is not None:
            self._broker.close_sync()
        if self._backend is not None:
            self._backend.close_sync()


def _class_attributes(cls: type) -> set[str]:
    """Names set as class attributes by ``cls`` or its bases below :class:`Task`."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (Task, AsyncTask, object):
            continue
        names.update(vars(klass))
    return names


#: Celery's name for the app class: ``from celeriac import Celery`` makes a port an import-line edit
Celery = Celeriac

#: the base class of an app's tasks, as Celery names it: ``class MyTask(app.Task)``, then ``base=MyTask``
Celeriac.Task = Task  # type: ignore[attr-defined]
