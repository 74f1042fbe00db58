"""Tasks and signatures: the Celery-shaped producer API.

``Task.apply_async`` builds a :class:`~celeriac.message.Message` and hands it to ``App.send``, which
hands bytes to ``Broker.enqueue``: three hops, the last one a visible Redis call.

Why this module is long: the Task class carries Celery's whole surface in one place (options, the
call and send methods, and the hooks a base class overrides: ``before_start``, ``on_success``,
``on_failure``, ``on_retry``, ``after_return``, which run in :mod:`celeriac._hooks`).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar

from .context import Request, current_request
from .exceptions import CeleriacError, ConfigurationError, Replaced, Retry
from .execution import check_time_limit
from .message import Message, new_task_id
from .result import AsyncResult, EagerResult
from .signals import ACTIVE as _SIGNALS

if TYPE_CHECKING:
    from .app import Celeriac
    from .canvas import Signature, group

P = ParamSpec("P")
R = TypeVar("R")

#: :class:`~celeriac.canvas.Signature`, once the first signature is built: canvas (the classes of
#: signatures, chains, groups, chords) loads then, not in every process that imports tasks (an idle
#: worker that never builds one: benchmarks/README.md). A global read per ``s()``, no import lookup.
_Signature: type[Signature] | None = None


def _load_canvas() -> type[Signature]:
    global _Signature
    from .canvas import Signature

    _Signature = Signature
    return Signature


#: the Task methods a base class may override (Celery's names), run where the task runs
HOOKS = ("before_start", "on_success", "on_failure", "on_retry", "after_return")
#: the options a base class may set as class attributes (``class MyTask(app.Task): max_retries = 5``)
CLASS_OPTIONS = (
    "name",
    "serializer",
    "queue",
    "ignore_result",
    "max_retries",
    "default_retry_delay",
    "autoretry_for",
    "dont_autoretry_for",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "acks_late",
    "result_expires",
    "time_limit",
    "soft_time_limit",
    "typing",
)


def _to_epoch_ms(value: datetime | float) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)  # naive datetimes are taken as UTC, as Celery does
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


@dataclass(frozen=True)
class SendOptions:
    """Per-call options of ``apply_async`` after normalisation (times as epoch ms / ms)."""

    queue: str | None = None
    task_id: str | None = None
    delay_ms: int | None = None
    eta_ms: int | None = None
    expires_ms: int | None = None
    ignore_result: bool | None = None
    max_retries: int | None = None
    acks_late: bool | None = None
    result_expires_s: float | None = None
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    #: 0 (highest) .. 9 (lowest); None: the task's own, else ``task_default_priority``
    priority: int | None = None
    #: the unique task lock (``unique_key=``), or None: see ``unique_for``
    unique_key: str | None = None
    #: seconds the unique lock is held at most (``unique_for=``); None: the task's own
    unique_for_s: float | None = None


NO_OPTIONS = SendOptions()


def check_priority(priority: object) -> int | None:
    """``priority`` as a level 0..9 (None stays None).

    Raises:
        ConfigurationError: not an integer from 0 to 9 (a ValueError).
    """
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ConfigurationError(
            "priority",
            f"must be an integer from 0 (highest) to 9 (lowest), got {priority!r} "
            "(celeriac follows Celery on Redis: 0 is the highest, unlike RabbitMQ)",
        )
    return priority


def check_unique_for(unique_for: object) -> float | None:
    """``unique_for`` seconds, checked (None stays None).

    Raises:
        ConfigurationError: not a positive number (a ValueError).
    """
    if unique_for is None:
        return None
    if isinstance(unique_for, bool) or not isinstance(unique_for, (int, float)) or not unique_for > 0:
        raise ConfigurationError("unique_for", f"must be a positive number of seconds, got {unique_for!r}")
    return float(unique_for)


def normalize_options(
    *,
    countdown: float | None = None,
    eta: datetime | float | None = None,
    expires: float | datetime | None = None,
    queue: str | None = None,
    task_id: str | None = None,
    ignore_result: bool | None = None,
    max_retries: int | None = None,
    acks_late: bool | None = None,
    result_expires: float | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    unique_for: float | None = None,
    now_s: Callable[[], float] | None = None,
) -> SendOptions:
    """Turn Celery-style call options into a :class:`SendOptions` (validated)."""
    import time

    clock = now_s or time.time
    if countdown is not None and eta is not None:
        raise ConfigurationError("countdown", "give countdown or eta, not both")
    delay_ms = None
    if countdown is not None:
        if countdown < 0:
            raise ConfigurationError("countdown", f"must be >= 0, got {countdown!r}")
        delay_ms = int(countdown * 1000) if countdown > 0 else None
    check_time_limit("time_limit", time_limit)
    check_time_limit("soft_time_limit", soft_time_limit)
    eta_ms = _to_epoch_ms(eta) if eta is not None else None
    if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
        raise ConfigurationError("unique_key", f"must be a non-empty string, got {unique_key!r}")
    expires_ms = None
    if expires is not None:
        # a number is seconds from now (Celery); a datetime is absolute
        expires_ms = (
            _to_epoch_ms(expires) if isinstance(expires, datetime) else int((clock() + expires) * 1000)
        )
    return SendOptions(
        queue=queue,
        task_id=task_id,
        delay_ms=delay_ms,
        eta_ms=eta_ms,
        expires_ms=expires_ms,
        ignore_result=ignore_result,
        max_retries=max_retries,
        acks_late=acks_late,
        result_expires_s=result_expires,
        time_limit_s=time_limit,
        soft_time_limit_s=soft_time_limit,
        priority=check_priority(priority),
        unique_key=unique_key,
        unique_for_s=check_unique_for(unique_for),
    )


class Task(Generic[P, R]):
    """A function registered as a task with ``@app.task``.

    Calling the task runs the function here, now. ``delay``/``apply_async`` send it to a worker.
    Declared options (``queue``, ``ignore_result``, ``max_retries``, ``autoretry_for``, backoff,
    ``acks_late``, ``result_expires``, ``time_limit``, ``soft_time_limit``) are applied by the worker,
    so ``send_task`` by name needs no copy of them; per-call options override them.
    """

    def __init__(
        self,
        app: Celeriac,
        fn: Callable[..., Any],
        *,
        name: str,
        bind: bool = False,
        serializer: str | None = None,
        queue: str | None = None,
        ignore_result: bool | None = None,
        max_retries: int | None = 3,
        default_retry_delay: float = 180.0,
        autoretry_for: Sequence[type[BaseException]] = (),
        dont_autoretry_for: Sequence[type[BaseException]] = (),
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        acks_late: bool | None = None,
        result_expires: float | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        typing: bool = True,
        rate_limit: str | float | None = None,
        rate_limit_scope: str = "global",
        rate_limit_key: Callable[..., Any] | None = None,
        max_concurrency: int | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        priority: int | None = None,
        unique_for: float | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.bind = bind
        if serializer not in (None, "msgpack", "json", "pickle"):
            raise ConfigurationError(
                "serializer", f"must be 'msgpack', 'json' or 'pickle', got {serializer!r}"
            )
        #: content type of arguments and result; None: the app's ``task_serializer``
        self.serializer = serializer
        self.queue = queue
        self.ignore_result = ignore_result
        self.max_retries = max_retries
        self.default_retry_delay = default_retry_delay
        self.autoretry_for = tuple(autoretry_for)
        self.dont_autoretry_for = tuple(dont_autoretry_for)
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.acks_late = acks_late
        self.result_expires = result_expires
        #: seconds; enforced by the worker (see docs/pools.md, "Time limits")
        self.time_limit = check_time_limit("time_limit", time_limit)
        self.soft_time_limit = check_time_limit("soft_time_limit", soft_time_limit)
        self.typing = typing
        from .flow.rates import flow_options  # checked here: a bad option fails at import

        # rate (parsed rate_limit), rate_limit, rate_limit_scope, rate_limit_key, max_concurrency,
        # concurrency_key: see celeriac.flow
        vars(self).update(
            flow_options(rate_limit, rate_limit_scope, rate_limit_key, max_concurrency, concurrency_key)
        )
        #: default priority of this task's messages: 0 (highest) .. 9; None: ``task_default_priority``
        self.priority = check_priority(priority)
        #: seconds: while an equal call is queued or running, sending another returns it (see
        #: docs/task-control.md, "Unique tasks"); None: not unique unless a call gives ``unique_key=``
        self.unique_for = check_unique_for(unique_for)
        self.is_async = inspect.iscoroutinefunction(fn)
        cls = type(self)
        #: a hook is overridden: the call is wrapped (:meth:`bound`)
        self._hooked = any(getattr(cls, h) is not getattr(Task, h) for h in HOOKS)
        self._signature = inspect.signature(fn)
        # Fast path of the argument check for the common shape (plain positional-or-keyword
        # parameters, called positionally): a length check instead of Signature.bind.
        params = list(self._signature.parameters.values())[1 if bind else 0 :]
        self._plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self._max_args = len(params)
        self._min_args = sum(1 for p in params if p.default is inspect.Parameter.empty)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", "")
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    @property
    def controlled(self) -> bool:
        """True when this task's sends need the task-control path (a priority or ``unique_for``)."""
        return bool(self.priority) or self.unique_for is not None

    # ---- running here -----------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in this process, now (no queue, no serialization)."""
        if self.bind:
            return self.fn(self, *args, **kwargs)  # type: ignore[no-any-return]
        return self.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def bound(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Callable[[], Any]:
        """The function with these arguments (and ``self`` for ``bind=True``), ready to call: what
        every pool, the process pool's children and eager mode run. With a hook overridden or a run
        signal connected, the hooks and signals run around the call (:mod:`celeriac._hooks`)."""
        fn = self.fn
        call = (lambda: fn(self, *args, **kwargs)) if self.bind else (lambda: fn(*args, **kwargs))
        if self._hooked or _SIGNALS.run:
            from ._hooks import instrumented

            return instrumented(self, args, kwargs, call)
        return call

    def bound_in(
        self, ctx: contextvars.Context, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Callable[[], Any]:
        """:meth:`bound`, run in ``ctx`` (a copy of the caller's context: ``self.request``): what the
        threads and greenlets run. Without hooks or run signals it is one ``functools.partial`` of
        ``ctx.run``: calling it runs the function with no Python frame of ours in between."""
        if self._hooked or _SIGNALS.run:
            return functools.partial(ctx.run, self.bound(args, kwargs))
        if self.bind:
            return functools.partial(ctx.run, self.fn, self, *args, **kwargs)
        return functools.partial(ctx.run, self.fn, *args, **kwargs)

    def run_with(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the function with these arguments now: ``bound(args, kwargs)()`` with one call less
        (a pool's hot path). Hooks and run signals run around it as with :meth:`bound`."""
        if self._hooked or _SIGNALS.run:
            return self.bound(args, kwargs)()
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    # ---- hooks (Celery's names and arguments): override them in a base class ----------------------
    def before_start(self, task_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called where the task runs, before the function."""

    def on_success(
        self, retval: Any, task_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """Called where the task runs, after it returned ``retval``."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called where the task runs, after it raised ``exc`` and will not be retried."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called where the task runs, after it raised ``exc`` and will be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called where the task runs, after the other hooks (``status``: SUCCESS, FAILURE, RETRY,
        IGNORED)."""

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError if ``args``/``kwargs`` do not fit the function's signature."""
        if not self.typing:
            return
        if self._plain and not kwargs and self._min_args <= len(args) <= self._max_args:
            return
        try:
            if self.bind:
                self._signature.bind(self, *args, **kwargs)
            else:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    @property
    def request(self) -> Request:
        """The invocation being executed (inside a running task)."""
        request = current_request()
        if request is None or request.task != self.name:
            raise CeleriacError(f"{self.name}.request is only available while the task runs")
        return request

    # ---- sending ---------------------------------------------------------------------------------
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task with these arguments (shortcut of ``apply_async``)."""
        return self.app.send(self.name, args, kwargs, NO_OPTIONS, task=self)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: float | datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        ignore_result: bool | None = None,
        max_retries: int | None = None,
        acks_late: bool | None = None,
        result_expires: float | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        link: Signature | Sequence[Signature] | None = None,
        link_error: Signature | Sequence[Signature] | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> AsyncResult[R]:
        """Send the task: one Redis round trip; the result store is not touched.

        Args:
            args, kwargs: arguments of the task (checked against its signature now).
            countdown: run no earlier than this many seconds from now.
            eta: run no earlier than this time (datetime, naive = UTC; or epoch seconds).
            expires: seconds from now, or a datetime, after which the task is discarded unstarted.
            queue: override the task's queue and ``task_routes``.
            task_id: use this id instead of a new UUID.
            ignore_result, max_retries, acks_late, result_expires: override the task's own options.
            time_limit, soft_time_limit: seconds; override the task's own limits for this call.
            link: signature(s) sent with this task's value prepended when it succeeds.
            link_error: signature(s) sent with this task's id prepended when it fails.
            priority: 0 (highest) .. 9 (lowest), Celery-on-Redis meaning; overrides the task's own.
            unique_key: send as a unique task under this key: while a task sent with the same key
                to the same queue is queued or running, nothing is sent and its AsyncResult is
                returned. ``unique_for`` (or the task's) bounds how long the key is held.
            unique_for: seconds; make this call unique (by task name and arguments unless
                ``unique_key`` is given) for at most this long.

        Raises:
            TypeError: the arguments do not fit the task's signature.
            SerializationError: an argument cannot be serialized.
            MessageTooLarge: the message exceeds ``max_message_bytes``.
            BrokerError: Redis is down or refused the message.
        """
        if link is not None or link_error is not None:  # a workflow: callbacks ride in the message
            sig = self.signature(args, kwargs)
            for cb in [link] if isinstance(link, dict) else link or ():
                sig.link(cb)
            for eb in [link_error] if isinstance(link_error, dict) else link_error or ():
                sig.link_error(eb)
            given = {
                "countdown": countdown, "eta": eta, "expires": expires, "queue": queue, "task_id": task_id,
                "max_retries": max_retries, "acks_late": acks_late, "result_expires": result_expires,
                "time_limit": time_limit, "soft_time_limit": soft_time_limit, "priority": priority,
                "unique_key": unique_key, "unique_for": unique_for,
            }  # fmt: skip
            chosen: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
            return sig.apply_async(None, None, **chosen)  # type: ignore[no-any-return]
        options = normalize_options(
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            task_id=task_id,
            ignore_result=ignore_result,
            max_retries=max_retries,
            acks_late=acks_late,
            result_expires=result_expires,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            priority=priority,
            unique_key=unique_key,
            unique_for=unique_for,
            now_s=self.app.clock.time,
        )
        return self.app.send(self.name, tuple(args or ()), dict(kwargs or {}), options, task=self)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None
    ) -> EagerResult[R]:
        """Run the task inline (eager mode, with serialization) and return its outcome."""
        return self.app.run_eager(
            self.build_message(tuple(args or ()), dict(kwargs or {}), SendOptions()), self
        )

    def build_message(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: SendOptions) -> Message:
        """The message ``apply_async`` would send (checks arguments)."""
        self.check_arguments(args, kwargs)
        return build_message(self.name, args, kwargs, options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with arguments, to send later (``sig.delay()``, in a chain, a group,
        a chord, ``app.send_many``). Arguments given when it is called are prepended."""
        return (_Signature or _load_canvas()).of_task(self, args, kwargs, False)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: arguments given when it is called (a chain's previous value) are
        ignored."""
        return (_Signature or _load_canvas()).of_task(self, args, kwargs, True)

    def signature(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A signature with send options (``queue=``, ``countdown=``, ``immutable=``...)."""
        immutable = bool(options.pop("immutable", False))
        return (_Signature or _load_canvas())(
            self, tuple(args or ()), dict(kwargs or {}), options, immutable=immutable
        )

    subtask = signature

    def map(self, it: Any) -> Signature:
        """One task calling this one inline for each item: ``add_one.map([1, 2])`` -> ``[2, 3]``."""
        from .canvas import xmap

        return xmap(self, it)

    def starmap(self, it: Any) -> Signature:
        """Like :meth:`map` with argument tuples: ``add.starmap([(1, 2), (3, 4)])`` -> ``[3, 7]``."""
        from .canvas import xstarmap

        return xstarmap(self, it)

    def chunks(self, it: Any, n: int) -> group:
        """A group of :meth:`starmap` tasks of ``n`` argument tuples each."""
        from .canvas import chunks

        return chunks(self, it, n)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """``delay`` once the current Django database transaction commits (Celery 5.4's name): never
        after a rollback, at once outside a transaction. Returns None, as Celery: the task is not sent
        yet. Needs Django (``celeriac[django]``)."""
        _on_commit(self.name, functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> None:
        """``apply_async`` once the current Django transaction commits (see :meth:`delay_on_commit`)."""
        _on_commit(self.name, functools.partial(self.apply_async, args, kwargs, **options))

    # ---- inside a running task -------------------------------------------------------------------
    def replace(self, sig: Signature) -> NoReturn:
        """End this task by handing its place to ``sig`` (a task or a whole canvas): ``sig``'s value
        becomes this task's value (same id), and callbacks, the rest of a chain and a chord this task
        belongs to follow ``sig``. Use as ``raise self.replace(sig)`` (or just call it) in a
        ``bind=True`` task."""
        request = self.request
        self.app.workflow.replace_in_task(self.app, request, sig)
        raise Replaced(request.id)

    def update_state(
        self, task_id: str | None = None, state: str = "PROGRESS", meta: Any = None, **_unused: Any
    ) -> None:
        """Record a custom state (``PROGRESS`` by convention) with ``meta`` for callers to read as
        ``AsyncResult(id).state`` / ``.info``, or to receive with ``get(on_message=...)``.

        Stored even when the task ignores results, with the task's result TTL; never replaces a
        final state. Writes are throttled to ``progress_interval_s`` per task (latest wins: a state
        given meanwhile is written when the interval ends). Without a result backend it does nothing.

        Raises:
            CeleriacError: outside a running task without ``task_id``.
            SerializationError: ``meta`` is not msgpack-serializable.
        """
        from .progress import update_state

        request = current_request()
        if task_id is None:
            if request is None or request.task != self.name:
                raise CeleriacError(f"{self.name}.update_state() needs task_id= outside the running task")
            task_id = request.id
        update_state(self.app, task_id, state, meta, self.result_expires)

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        max_retries: int | None = None,
        **_unused: Any,
    ) -> NoReturn:
        """Ask the worker to run this task again later: ``raise self.retry(exc=e, countdown=2)``.

        Without ``countdown``/``eta`` the delay is ``default_retry_delay`` (or the backoff policy if
        ``retry_backoff`` is set). When ``max_retries`` is reached, the task fails with ``exc`` (or
        :class:`MaxRetriesExceededError`) and a dead-letter entry keeps the message.
        """
        eta_ms = _to_epoch_ms(eta) if eta is not None else None
        raise Retry(exc=exc, countdown_s=countdown, eta_ms=eta_ms, max_retries=max_retries)


class AsyncTask(Task[P, R]):
    """A task whose function is a coroutine function (``async def``): the same as :class:`Task`,
    except that calling it here returns the coroutine (``R`` is what the coroutine returns, and what
    ``AsyncResult.get()`` gives)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:  # type: ignore[override]
        """Call the function in this process, now: returns the coroutine to await."""
        return super().__call__(*args, **kwargs)  # type: ignore[return-value]


def build_message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: SendOptions) -> Message:
    """The message for one invocation."""
    if options is NO_OPTIONS:  # the common call (delay, bulk sends): no option to copy
        return Message(new_task_id(), name, args, kwargs)
    return Message(
        id=options.task_id or new_task_id(),
        task=name,
        args=args,
        kwargs=kwargs,
        eta_ms=options.eta_ms,
        expires_ms=options.expires_ms,
        ignore_result=options.ignore_result,
        max_retries=options.max_retries,
        acks_late=options.acks_late,
        result_expires_s=options.result_expires_s,
        time_limit_s=options.time_limit_s,
        soft_time_limit_s=options.soft_time_limit_s,
        unique_key=options.unique_key,
    )


def unique_digest(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The default unique key of a call: a digest of the task name and its arguments (keyword
    arguments in name order, so ``f(a=1, b=2)`` equals ``f(b=2, a=1)``; ``1`` and ``1.0`` differ)."""
    import hashlib

    import msgpack

    canonical = [name, list(args), sorted(kwargs.items())]
    try:
        packed = msgpack.packb(canonical, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):  # a pickle task's arguments
        import pickle

        packed = pickle.dumps(canonical, protocol=4)
    return f"{name}:{hashlib.blake2b(packed, digest_size=16).hexdigest()}"


def _on_commit(name: str, send: Callable[[], Any]) -> None:
    """Run ``send`` when Django's current transaction commits (``transaction.on_commit``)."""
    try:
        from django.db import transaction  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ConfigurationError(
            f"{name}.delay_on_commit", "needs Django: pip install 'celeriac[django]' (or use delay())"
        ) from None
    transaction.on_commit(send)
