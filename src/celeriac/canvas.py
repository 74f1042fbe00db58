"""Canvas: signatures and the workflow primitives ``chain``, ``group``, ``chord`` (Celery's API).

A signature is a plain ``dict`` with the keys ``task``, ``args``, ``kwargs``, ``options``,
``subtask_type`` and ``immutable``, so it survives msgpack and JSON and is rebuilt with
:func:`signature` / :func:`maybe_signature`. The subclasses differ only in ``subtask_type`` and keep
their members in ``kwargs`` (``tasks`` for chain and group, ``header``/``body`` for chord), as Celery
does. Construction rules of ``|`` follow Celery: chains splice, a one-member group in a chain is
unrolled, a group followed by a task is a chord, nested groups are flattened.

How a canvas is sent and how the worker carries it on lives in :mod:`celeriac.workflow`; this module
only builds values.

Why this module is long: it is Celery's canvas API surface (``Signature`` and its four subclasses)
with their docstrings; the ``|`` construction rules refer to every class, so they stay together.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _registry
from .exceptions import CeleriacError

if TYPE_CHECKING:
    from .app import Celeriac
    from .task import Task

#: the app created last: signatures built without a task (``group([])``) are sent through it (the
#: list lives in _registry: apps set it without loading this module)
_last_app: list[Celeriac] = _registry.last_app

#: registry of subtask types: ``subtask_type`` -> class (used by :func:`signature`)
_TYPES: dict[str, type[Signature]] = {}


def _register(cls: type[Signature]) -> type[Signature]:
    assert cls.TYPE is not None
    _TYPES[cls.TYPE] = cls
    return cls


class Signature(dict):  # type: ignore[type-arg]
    """A task with arguments and send options: what to run, without running it (Celery's ``signature``).

    Args:
        task: a task name, a :class:`~celeriac.Task`, or a signature dict to rebuild.
        args, kwargs: arguments; extra positional arguments given when it is called are prepended.
        options: ``apply_async`` options (``queue``, ``countdown``, ``link``, ...).
        subtask_type: ``None`` for a task; ``"chain"``, ``"group"``, ``"chord"`` for the primitives.
        immutable: ignore arguments given when called (``task.si(...)``).
        app: the app that sends it (a task's own app when built from a task).
    """

    __slots__ = ("_app", "_type")
    TYPE: str | None = None

    def __init__(
        self,
        task: str | Task[Any, Any] | Mapping[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        type: Task[Any, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celeriac | None = None,
        **ex: Any,
    ) -> None:
        self._app = app
        self._type = type
        if isinstance(task, Mapping):
            d = dict(task)
            super().__init__(d)
            self["args"] = tuple(d.get("args") or ())
            self["kwargs"] = dict(d.get("kwargs") or {})
            self["options"] = dict(d.get("options") or {})
            self.setdefault("subtask_type", None)
            self["immutable"] = bool(d.get("immutable", False))
            return
        name = task
        if task is not None and not isinstance(task, str):
            self._type = task
            self._app = app or task.app
            name = task.name
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options={**dict(options or {}), **ex},
            subtask_type=subtask_type,
            immutable=immutable,
        )

    # ---- the dict's fields as attributes -------------------------------------------------------------
    @property
    def name(self) -> str:
        """The task name (``None`` for primitives)."""
        return self["task"]  # type: ignore[no-any-return]

    @property
    def task(self) -> str:
        """The task name, as in Celery (the :class:`~celeriac.Task` object is :attr:`type`)."""
        return self["task"]  # type: ignore[no-any-return]

    @property
    def args(self) -> tuple[Any, ...]:
        return self["args"]  # type: ignore[no-any-return]

    @args.setter
    def args(self, value: Sequence[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]  # type: ignore[no-any-return]

    @kwargs.setter
    def kwargs(self, value: Mapping[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]  # type: ignore[no-any-return]

    @options.setter
    def options(self, value: Mapping[str, Any]) -> None:
        self["options"] = dict(value)

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @property
    def id(self) -> str | None:
        """The task id given to it (by ``freeze()``, ``set(task_id=...)`` or when it was sent)."""
        return self.options.get("task_id")

    @property
    def app(self) -> Celeriac | None:
        return self._app

    @property
    def type(self) -> Task[Any, Any] | None:
        """The registered :class:`~celeriac.Task` of this name, when the app knows it."""
        if self._type is None and self.TYPE is None:
            app = self.app
            if app is not None:
                self._type = app.tasks.get(self.name)
        return self._type

    @classmethod
    def of_task(
        cls, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], immutable: bool
    ) -> Signature:
        """``task.s()`` / ``task.si()``: the common construction, without the checks of ``__init__``
        (bulk groups build hundreds of thousands)."""
        sig = dict.__new__(cls)
        dict.__init__(
            sig, task=task.name, args=args, kwargs=kwargs, options={}, subtask_type=None, immutable=immutable
        )
        sig._app = task.app
        sig._type = task
        return sig

    def __repr__(self) -> str:
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(args)}){'!' if self.immutable else ''}"

    def __reduce__(self) -> Any:  # pickling keeps the plain-dict shape (no app, no Task)
        return (signature, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        clone = signature(copy.deepcopy(dict(self), memo), app=self._app)
        clone._type = self._type
        return clone

    # ---- building ---------------------------------------------------------------------------------
    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature:
        """A deep copy with ``args`` prepended, ``kwargs`` and options merged (immutable: options only)."""
        clone = copy.deepcopy(self)
        if not self.immutable:
            if args:
                clone["args"] = (*args, *clone.args)
            if kwargs:
                clone["kwargs"] = {**clone.kwargs, **kwargs}
        if opts:
            clone.set(**opts)
        return clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Add send options (``queue=``, ``countdown=``, ...) and return this signature (Celery)."""
        if immutable is not None:
            self["immutable"] = bool(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = bool(immutable)

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature:
        """Run ``callback`` with this task's value when it succeeds; returns ``callback``."""
        cb: Signature = maybe_signature(callback, app=self._app)
        self.options.setdefault("link", []).append(cb)
        return cb

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature:
        """Run ``errback`` with the failed task's id when this task fails; returns ``errback``."""
        eb: Signature = maybe_signature(errback, app=self._app)
        self.options.setdefault("link_error", []).append(eb)
        return eb

    def on_error(self, errback: Signature | Mapping[str, Any]) -> Signature:
        """Like :meth:`link_error`, but returns this signature (for chaining calls)."""
        self.link_error(errback)
        return self

    def freeze(self, _id: str | None = None) -> Any:
        """Give every node of this canvas its task id now and return the result handle."""
        return self._bound_app().workflow.freeze(self._bound_app(), self, _id)

    def _bound_app(self) -> Celeriac:
        app = self.app or (_last_app[0] if _last_app else None)
        if app is None:
            raise CeleriacError(
                f"signature {self!r} is not bound to an app: build it from a task (task.s()) or pass app="
            )
        return app

    # ---- running ----------------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send it with these extra arguments (``apply_async(args, kwargs)``)."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Send it: ``args`` are prepended to its own (unless immutable), ``kwargs`` and ``options``
        merged. Returns the :class:`~celeriac.AsyncResult` (a chain: its last task's; a group: a
        :class:`~celeriac.GroupResult`)."""
        app = self._bound_app()
        return app.workflow.send(self._bound_app(), self, tuple(args or ()), dict(kwargs or {}), options)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Run it here, now, through the worker's execution path (serialized as a worker would)."""
        app = self._bound_app()
        return app.workflow.apply_eager(
            self._bound_app(), self, tuple(args or ()), dict(kwargs or {}), options
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task's function inline (no queue, no serialization)."""
        task = self.type
        if task is None:
            raise CeleriacError(
                f"task {self.name!r} is not registered in this process: cannot call it inline"
            )
        call_args = self.args if self.immutable else (*args, *self.args)
        call_kwargs = self.kwargs if self.immutable else {**self.kwargs, **kwargs}
        return task(*call_args, **call_kwargs)

    def __invert__(self) -> Any:
        return self.apply_async().get()

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Mapping) and not isinstance(other, Signature):
            other = signature(other, app=self._app)
        if not isinstance(other, Signature):
            return NotImplemented
        return _pipe(self, other)

    # celery spellings kept for users porting code
    subtask = clone


def _is_dict_of(value: Any, subtask_type: str) -> bool:
    """A plain dict form of a ``subtask_type`` (rebuilt), not a signature object (nested)."""
    return (
        isinstance(value, Mapping)
        and not isinstance(value, Signature)
        and value.get("subtask_type") == subtask_type
    )


def _pipe(left: Signature, right: Signature) -> Signature:
    """``left | right`` by Celery's construction rules."""
    if isinstance(left, group) and not isinstance(right, chain):
        return chord(left, right, app=left._app or right._app)  # even of one member (Celery)
    return chain(left, right, app=left._app or right._app)


@_register
class chain(Signature):
    """Run tasks one after the other, each receiving the previous one's value as its first argument.

    ``chain(a, b, c)`` is ``a | b | c``; ``chain([a, b, c])`` too. The result is the last task's
    :class:`~celeriac.AsyncResult`; ``.parent`` walks back.
    """

    TYPE = "chain"

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1 and _is_dict_of(tasks[0], "chain"):
            d = dict(tasks[0])
            super().__init__(d, app=app)
            self.kwargs["tasks"] = [maybe_signature(t, app=app) for t in self.kwargs.get("tasks", [])]
            return
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps = _chain_steps([maybe_signature(t, app=app) for t in tasks])
        app = app or next((t._app for t in steps if t._app is not None), None)
        super().__init__("celeriac.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app)

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks) or "chain()"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(...)()`` sends it (Celery)."""
        return self.apply_async(args, kwargs)

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Mapping) and not isinstance(other, Signature):
            other = signature(other, app=self._app)
        if not isinstance(other, Signature):
            return NotImplemented
        return chain(*self.tasks, other, app=self._app or other._app, **self.options)

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature:
        clone = copy.deepcopy(self)
        if args or kwargs:  # call-time arguments go to the first task only
            clone.tasks[0] = clone.tasks[0].clone(args, kwargs)
        if opts:
            clone.set(**opts)
        return clone


def _chain_steps(tasks: list[Signature]) -> list[Signature]:
    """Celery's chain rules: splice inner chains, unroll one-member groups, skip empty groups in the
    middle, and turn a group followed by another step into a chord."""
    flat: list[Signature] = []
    for t in tasks:
        if isinstance(t, chain) and not t.options:
            flat.extend(t.tasks)
        elif isinstance(t, chain):
            inner = t.clone()
            assert isinstance(inner, chain)
            _distribute_chain_options(inner)
            flat.extend(inner.tasks)
        else:
            flat.append(t)
    out: list[Signature] = []
    for i, t in enumerate(flat):
        if isinstance(t, group):
            if len(t.tasks) == 1 and not t.options.get("link"):
                t = t.tasks[0]
            elif not t.tasks and 0 < i < len(flat) - 1:
                continue
        if out and isinstance(out[-1], group) and not (isinstance(out[-1], chord)):
            header = out.pop()
            t = chord(header, t, app=header._app or t._app)
        out.append(t)
    return out


def _distribute_chain_options(c: chain) -> None:
    """A chain's ``link`` goes to its last task, its ``link_error`` to every task (Celery)."""
    links = c.options.pop("link", [])
    errbacks = c.options.pop("link_error", [])
    if links:
        c.tasks[-1].options.setdefault("link", []).extend(links)
    for t in c.tasks:
        for eb in errbacks:
            t.link_error(eb)


@_register
class group(Signature):
    """Run tasks in parallel; the result is a :class:`~celeriac.GroupResult` (values in member order).

    ``group(a, b)``, ``group([a, b])`` and ``group(sig for ...)`` all work; nested groups are flattened.
    """

    TYPE = "group"

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1 and _is_dict_of(tasks[0], "group"):
            super().__init__(dict(tasks[0]), app=app)
            self.kwargs["tasks"] = [maybe_signature(t, app=app) for t in self.kwargs.get("tasks", [])]
            return
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])  # a list, a tuple or a generator
        members: list[Signature] = []
        for t in tasks:
            if type(t) is Signature:  # the common member: nothing to convert or flatten
                members.append(t)
                continue
            sig = maybe_signature(t, app=app)
            if isinstance(sig, group) and not isinstance(sig, chord) and not sig.options:
                members.extend(sig.tasks)  # nested groups are flattened
            else:
                members.append(sig)
        app = app or next((t._app for t in members if t._app is not None), None)
        super().__init__("celeriac.group", (), {"tasks": members}, options, subtask_type="group", app=app)

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``group(...)()`` sends it (Celery)."""
        return self.apply_async(args, kwargs)

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature:
        clone = copy.deepcopy(self)
        if args or kwargs:
            clone.kwargs["tasks"] = [t.clone(args, kwargs) for t in clone.tasks]
        if opts:
            clone.set(**opts)
        return clone

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature:
        """Run ``callback`` (made immutable) once, after every member succeeded."""
        cb: Signature = maybe_signature(callback, app=self._app).clone()
        cb.set(immutable=True)
        self.options.setdefault("link", []).append(cb)
        return cb

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature:
        """Run ``errback`` once for each member that fails (Celery)."""
        eb: Signature = maybe_signature(errback, app=self._app)
        for t in self.tasks:
            t.link_error(eb.clone())
        return eb

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Stagger the members: countdowns ``start``, ``start + step``, ... (capped at ``stop``)."""
        for i, t in enumerate(self.tasks):
            countdown = start + i * step
            if stop is not None:
                countdown = min(countdown, stop)
            t.set(countdown=countdown)
        return self


@_register
class chord(group):
    """Run the ``header`` group, then ``body`` once with the list of the header's values (in header
    order). ``chord(header, body)`` or ``chord(header)(body)``; the result is the body's."""

    TYPE = "chord"

    def __init__(
        self,
        header: Any = None,
        body: Any = None,
        *,
        app: Celeriac | None = None,
        **options: Any,
    ) -> None:
        if _is_dict_of(header, "chord"):
            Signature.__init__(self, dict(header), app=app)
            hdr = self.kwargs["header"]
            self.kwargs["header"] = hdr if isinstance(hdr, group) else group(hdr, app=app)
            if self.kwargs.get("body") is not None:
                self.kwargs["body"] = maybe_signature(self.kwargs["body"], app=app)
            return
        if isinstance(header, group) and not isinstance(header, chord):
            hdr = header
        elif isinstance(header, Signature) and not isinstance(header, group):
            hdr = group([header], app=app)
        else:
            hdr = group(header or [], app=app)
        b = maybe_signature(body, app=app) if body is not None else None
        app = app or hdr._app or (b._app if b is not None else None)
        Signature.__init__(
            self, "celeriac.chord", (), {"header": hdr, "body": b}, options, subtask_type="chord", app=app
        )

    @property
    def header(self) -> group:
        return self.kwargs["header"]  # type: ignore[no-any-return]

    @property
    def body(self) -> Signature | None:
        return self.kwargs.get("body")

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)`` sends the chord with this body; ``chord(header, body)()`` sends it."""
        if body is not None:
            self.kwargs["body"] = maybe_signature(body, app=self._app)
        return self.apply_async(**options)

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature:
        clone = copy.deepcopy(self)
        if args or kwargs:  # call-time arguments go to the header (Celery)
            clone.kwargs["header"] = clone.header.clone(args, kwargs)
        if opts:
            clone.set(**opts)
        return clone

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature:
        """Linked to the body."""
        assert self.body is not None, "a chord needs a body first"
        return self.body.link(callback)

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature:
        """Linked to the body: runs once, whether a header task or the body fails."""
        assert self.body is not None, "a chord needs a body first"
        return self.body.link_error(errback)

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Mapping) and not isinstance(other, Signature):
            other = signature(other, app=self._app)
        if not isinstance(other, Signature):
            return NotImplemented
        return chain(self, other, app=self._app or other._app)


def signature(varies: Any, *args: Any, app: Celeriac | None = None, **kwargs: Any) -> Signature:
    """Build a signature: ``signature("tasks.add", (1, 2))``, or rebuild one from its dict form."""
    if isinstance(varies, Mapping):
        if isinstance(varies, Signature) and not args and not kwargs:
            return varies.clone()
        cls = _TYPES.get(str(varies.get("subtask_type"))) if varies.get("subtask_type") else None
        if cls is not None:
            return cls(dict(varies), app=app)
        return Signature(dict(varies), app=app)
    sig = Signature(varies, *args, **kwargs)
    sig._app = app or sig._app
    return sig


def maybe_signature(d: Any, app: Celeriac | None = None) -> Any:
    """``d`` as a signature (``None`` stays ``None``; a signature is returned as is)."""
    if d is None:
        return None
    if isinstance(d, Signature):
        if app is not None and d._app is None:
            d._app = app
        return d
    if isinstance(d, Mapping):
        return signature(d, app=app)
    if callable(getattr(d, "s", None)) and hasattr(d, "fn"):  # a Task (not imported: task.py imports this)
        return d.s()
    raise TypeError(f"not a signature: {d!r} (expected task.s(...), a signature dict, or a Task)")


def chunks(task: Task[Any, Any], it: Iterable[Sequence[Any]], n: int) -> group:
    """A group of ``starmap`` tasks of ``n`` argument tuples each (``task.chunks(it, n)``)."""
    if n < 1:
        raise ValueError(f"chunks: n must be >= 1, got {n!r}")
    items = [tuple(x) for x in it]
    parts = [items[i : i + n] for i in range(0, len(items), n)]
    return group([xstarmap(task, part) for part in parts], app=task.app)


def xmap(task: Task[Any, Any], it: Iterable[Any]) -> Signature:
    """One task that calls ``task`` for each item inline and returns the list (``task.map(it)``)."""
    return Signature("celeriac.map", (task.name, list(it)), app=task.app)


def xstarmap(task: Task[Any, Any], it: Iterable[Sequence[Any]]) -> Signature:
    """Like :func:`xmap`, each item being an argument tuple (``task.starmap(it)``)."""
    return Signature("celeriac.starmap", (task.name, [list(x) for x in it]), app=task.app)


subtask = signature

__all__ = [
    "Signature",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]
