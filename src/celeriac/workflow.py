"""How a canvas runs: ids frozen at send, messages that carry their continuation, chords in Redis.

A canvas (:mod:`celeriac.canvas`) is turned into a :class:`Plan`: messages to enqueue, chords to
create, results to store, chord parts to count. The client builds the plan of the whole canvas when
it sends; the worker builds the plan of what follows one task when that task's outcome is final, and
carries it out before the task's ack (so a worker that dies in between runs the task again and
dispatches the same plan again: every dispatch is idempotent, keyed by the frozen id).

What a message carries (``extra["w"]``, only for workflow messages; every key optional):

====  ==========================================================================================
key   meaning
====  ==========================================================================================
c     the rest of the chain: signature dicts, run one after the other with the value prepended
d     chord pointer ``[chord id, member index]`` (+ the body's queue when it differs from the
      member's own): where the value goes when the chain rest is done. 20 bytes + queue name
k     callbacks (``link``): signatures sent with the value prepended when the task succeeds
e     errbacks (``link_error``): signatures sent with the failed task's id prepended
g, i  group id and index of a group member (``self.request.group_id`` / ``group_index``)
r     chord id: this message is a chord body; its first argument is the header's values, read from
      the chord's hash when it starts
====  ==========================================================================================

A chord is one hash ``{body queue}:chord:<id>`` in the hash slot of its body's queue: the header
size, the body's message (stored once), one field per finished member (HSETNX on its index: a member
that runs twice counts once) and the first failure. ``chord_part.lua`` counts members and XADDs the
body into its queue's stream in the same script as the last count. A failed member (exception,
expiry, dead letter, revoke: anything calling :func:`member_failed` or a worker's outcome) fails the
chord at once: the body's result is FAILURE with :class:`~celeriac.exceptions.ChordError`.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import msgpack

from .canvas import Signature, chain, chord, group, maybe_signature, signature
from .exceptions import ChordError, DecodeError, Replaced
from .message import Message
from .result import AsyncResult, GroupResult
from .results.base import ResultRecord, StoreResult, encode_record
from .states import TaskState

if TYPE_CHECKING:
    from .app import Celeriac
    from .context import Request

logger = logging.getLogger("celeriac.workflow")

_NS = uuid.UUID("6f1c6a3e-51b5-4b0a-9d2e-8f5cbd3a7c11")

# apply_async options that become message options; the others are workflow bookkeeping or ignored
_SEND_KEYS = (
    "countdown",
    "eta",
    "expires",
    "queue",
    "max_retries",
    "acks_late",
    "result_expires",
    "time_limit",
    "soft_time_limit",
)
_CHORD_ERROR = f"{ChordError.__module__}.{ChordError.__qualname__}"


def derive_id(base: str, tag: str) -> str:
    """A task id fixed by ``base`` and ``tag`` (the same on every run of the task that makes it)."""
    return str(uuid.uuid5(_NS, f"{base}/{tag}"))


# ---- freezing: every id fixed before anything is sent ------------------------------------------------
def freeze(app: Celeriac, sig: Signature, _id: str | None = None, *, base: str | None = None) -> Any:
    """Give every node of ``sig`` its id (kept if it has one) and return its result handle.

    ``base``: derive the new ids from this id (a task replacing itself: the same ids on a rerun).
    """
    counter = [0]

    def new_id() -> str:
        counter[0] += 1
        return derive_id(base, str(counter[0])) if base is not None else str(uuid.uuid4())

    _freeze(sig, _id, new_id)
    return result_of(app, sig)


def _freeze(sig: Signature, _id: str | None, new_id: Any) -> None:
    opts = sig.options
    _normalize_times(opts)
    if isinstance(sig, chord):
        gid = sig.header.options.get("task_id") or new_id()
        sig.header.options["task_id"] = gid
        for t in sig.header.tasks:
            _freeze(t, None, new_id)
        if sig.body is not None:
            _freeze(sig.body, _id or opts.get("task_id"), new_id)
            opts["task_id"] = _final_id(sig.body)
    elif isinstance(sig, group):
        opts.setdefault("task_id", _id or new_id())
        for t in sig.tasks:
            _freeze(t, None, new_id)
    elif isinstance(sig, chain):
        from .canvas import _distribute_chain_options

        tasks = sig.tasks
        if tasks:
            _distribute_chain_options(sig)
        for i, t in enumerate(tasks):
            _freeze(t, _id if i == len(tasks) - 1 else None, new_id)
        if tasks:
            opts["task_id"] = _final_id(tasks[-1])
    else:
        if _id is not None:
            opts["task_id"] = _id
        opts.setdefault("task_id", new_id())
    for key in ("link", "link_error"):
        for cb in opts.get(key) or ():
            if isinstance(cb, Signature):
                _freeze(cb, None, new_id)


def _normalize_times(opts: dict[str, Any]) -> None:
    """Datetimes become epoch seconds, so that a signature stays a msgpack/JSON value."""
    eta = opts.get("eta")
    if isinstance(eta, datetime):
        opts["eta"] = (eta if eta.tzinfo else eta.replace(tzinfo=timezone.utc)).timestamp()
    expires = opts.get("expires")
    if isinstance(expires, datetime):
        opts.pop("expires")
        opts["expires_at"] = (expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)).timestamp()


def _final_id(sig: Signature) -> str:
    return str(sig.options["task_id"])


def result_of(app: Celeriac, node: Mapping[str, Any], parent: Any = None) -> Any:
    """The result handle of a frozen node: a task's AsyncResult, a chain's last one (``parent``
    walking back), a group's GroupResult, a chord's body result (its parent: the header)."""
    sig: Any = maybe_signature(node, app=app)
    if isinstance(sig, chord):
        header = GroupResult(
            sig.header.options["task_id"], [result_of(app, t) for t in sig.header.tasks], app, parent
        )
        if sig.body is None:
            return header
        return result_of(app, sig.body, header)
    if isinstance(sig, group):
        return GroupResult(sig.options["task_id"], [result_of(app, t) for t in sig.tasks], app, parent)
    if isinstance(sig, chain):
        res = parent
        for t in sig.tasks:
            res = result_of(app, t, res)
        return res
    return AsyncResult(sig.options["task_id"], app, parent=parent)


def ids_of(node: Mapping[str, Any], app: Celeriac | None = None) -> list[str]:
    """Every task id a frozen node will produce a result under (so that each can be failed)."""
    sig: Any = maybe_signature(node, app=app)
    if isinstance(sig, chord):
        return [i for t in sig.header.tasks for i in ids_of(t)] + (ids_of(sig.body) if sig.body else [])
    if isinstance(sig, (group, chain)):
        return [i for t in sig.tasks for i in ids_of(t)]
    if sig.name == "celeriac.run_canvas":
        return [sig.options["task_id"], *ids_of(sig.kwargs["sig"])]
    return [sig.options["task_id"]]


# ---- plans ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Send:
    queue: str
    key: str  # dispatch key: the task id (a replacement's: prefixed, see replace_in_task)
    data: bytes
    delay_ms: int | None = None
    eta_ms: int | None = None


@dataclass(slots=True)
class ChordInit:
    queue: str
    chord_id: str
    size: int
    body: bytes
    needs_values: bool
    key: str = ""  # dispatch key ("chord:<id>", prefixed like a replacement's sends)


@dataclass(slots=True)
class Part:
    queue: str
    chord_id: str
    index: int
    ok: bool
    payload: bytes


@dataclass
class Plan:
    """Redis writes that carry a workflow on: applied in this order (chords exist before their
    members are sent, failures are stored before a chord hears of them)."""

    chords: list[ChordInit] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    stores: list[StoreResult] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    forget: list[tuple[str, str]] = field(default_factory=list)  # (queue, chord id)

    def __bool__(self) -> bool:
        return bool(self.chords or self.sends or self.stores or self.parts or self.forget)

    def extend(self, other: Plan) -> None:
        self.chords += other.chords
        self.sends += other.sends
        self.stores += other.stores
        self.parts += other.parts
        self.forget += other.forget


@dataclass
class Cont:
    """What happens with a node's value: the rest of a chain, then a chord pointer."""

    chain: list[Any] = field(default_factory=list)
    ptr: list[Any] | None = None


@dataclass
class _Ctx:
    app: Celeriac
    plan: Plan
    root_id: str | None
    parent_id: str | None
    check: bool  # check arguments now (a client send); a worker's successors are checked when they run
    key_prefix: str = ""  # dispatch keys of a replacement differ from the ids they take over


def _launch(
    ctx: _Ctx,
    sig: Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cont: Cont,
    ref: str | None = None,
) -> None:
    """Add to ``ctx.plan`` what starts the frozen node ``sig`` with extra ``args``/``kwargs``."""
    if isinstance(sig, chord):
        if sig.body is None:
            raise TypeError("a chord needs a body: chord(header, body) or chord(header)(body)")
        call_args = () if sig.immutable else args
        _launch_chord(ctx, sig.header.tasks, sig.header.options["task_id"], sig.body, call_args, kwargs, cont)
    elif isinstance(sig, group):
        members = sig.tasks
        links = sig.options.get("link") or []
        if cont.chain or cont.ptr is not None or links:
            # the group's value (the list) feeds something: fan in through a chord
            if cont.chain:
                body, rest = maybe_signature(cont.chain[0], app=ctx.app), cont.chain[1:]
            else:
                body = Signature("celeriac.accumulate", app=ctx.app)
                body.options["task_id"] = derive_id(sig.options["task_id"], "accumulate")
                rest = []
            if links:
                body = body.clone()
                for cb in links:
                    body.link(cb)
            _launch_chord(ctx, members, sig.options["task_id"], body, args, kwargs, Cont(rest, cont.ptr))
            return
        gid = sig.options["task_id"]
        for i, m in enumerate(members):
            m.options["group_id"] = gid
            m.options["group_index"] = i
            _launch(ctx, m, args, kwargs, Cont())
    elif isinstance(sig, chain):
        tasks = sig.tasks
        if not tasks:
            raise TypeError("cannot send an empty chain")
        rest = [*tasks[1:], *cont.chain]
        _launch(ctx, tasks[0], args, kwargs, Cont(rest, cont.ptr), ref)
    else:
        ctx.plan.sends.append(_message(ctx, sig, args, kwargs, cont, ref))


def _launch_chord(
    ctx: _Ctx,
    members: list[Signature],
    gid: str,
    body: Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cont: Cont,
) -> None:
    if not members:  # Celery: the body is called at once with an empty list
        _launch(ctx, body, ([],), {}, cont)
        return
    init = _chord_init(ctx, members, gid, body, cont)
    ctx.plan.chords.append(init)
    for i, m in enumerate(members):
        _launch(ctx, m, args, kwargs, Cont([], [gid, i, init.queue]))


def _chord_init(ctx: _Ctx, members: list[Signature], gid: str, body: Signature, cont: Cont) -> ChordInit:
    """The state of a chord: its size and its body's one message (a body that starts with a group
    gets a ``run_canvas`` message that starts it)."""
    first = body
    while isinstance(first, chain) and not isinstance(first, group):
        first = first.tasks[0]
    if isinstance(first, group):  # a body that fans out: one message that starts it (run_canvas)
        wrapper = Signature("celeriac.run_canvas", (), {"sig": body}, app=ctx.app)
        wrapper.options["task_id"] = derive_id(gid, "body")
        if body.immutable:
            wrapper.set(immutable=True)
        first, body = wrapper, wrapper
    needs = not first.immutable
    sub = _Ctx(ctx.app, Plan(), ctx.root_id, ctx.parent_id, False, ctx.key_prefix)
    _launch(sub, body, (), {}, cont, ref=gid if needs else None)
    assert len(sub.plan.sends) == 1 and not sub.plan.chords, "a chord body starts with one message"
    b = sub.plan.sends[0]
    return ChordInit(b.queue, gid, len(members), b.data, needs, f"{ctx.key_prefix}chord:{gid}")


def _send_options(opts: Mapping[str, Any]) -> Any:
    from .task import normalize_options

    given = {k: opts[k] for k in _SEND_KEYS if opts.get(k) is not None}
    if opts.get("expires_at") is not None:
        given["expires"] = datetime.fromtimestamp(float(opts["expires_at"]), timezone.utc)
    return normalize_options(**given)


def _plain(value: Any) -> Any:
    """Signatures (dict subclasses, tuples inside) as plain lists and dicts for the wire."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _message(
    ctx: _Ctx, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], cont: Cont, ref: str | None
) -> Send:
    app = ctx.app
    task = app.tasks.get(sig.name)
    if sig.immutable:
        call_args, call_kwargs = tuple(sig.args), dict(sig.kwargs)
    else:
        call_args, call_kwargs = (*args, *sig.args), {**sig.kwargs, **kwargs}
    if ctx.check and task is not None and ref is None:
        task.check_arguments(call_args, call_kwargs)
    opts = sig.options
    options = _send_options(opts)
    w: dict[str, Any] = {}
    if cont.chain:
        w["c"] = _plain(cont.chain)
    queue = app.route(sig.name, task, options.queue)
    if cont.ptr is not None:
        gid, index, body_queue = cont.ptr
        packed = _pack_id(gid)
        w["d"] = [packed, index] if body_queue == queue else [packed, index, body_queue]
    if opts.get("link"):
        w["k"] = _plain(opts["link"])
    if opts.get("link_error"):
        w["e"] = _plain(opts["link_error"])
    if opts.get("group_id") is not None:
        w["g"], w["i"] = opts["group_id"], opts.get("group_index", 0)
    if ref is not None:
        w["r"] = ref
    task_id = str(opts["task_id"])
    eta_ms = options.eta_ms
    if options.delay_ms is not None and eta_ms is None:
        from .worker.executor import wall_ms

        eta_in_message = wall_ms() + options.delay_ms
    else:
        eta_in_message = eta_ms
    message = Message(
        id=task_id,
        task=sig.name,
        args=call_args,
        kwargs=call_kwargs,
        eta_ms=eta_in_message,
        expires_ms=options.expires_ms,
        ignore_result=False,  # workflow members store their results: the workflow reads them
        max_retries=options.max_retries,
        acks_late=options.acks_late,
        result_expires_s=options.result_expires_s,
        root_id=ctx.root_id if ctx.root_id != task_id else None,  # None: the task is its own root
        parent_id=ctx.parent_id,
        time_limit_s=options.time_limit_s,
        soft_time_limit_s=options.soft_time_limit_s,
        extra={"w": w} if w else {},
    )
    serializer = (task.serializer if task is not None else None) or app.conf.task_serializer
    if serializer != "msgpack":
        message = replace(message, serializer=serializer)
    data = app._checked_size(app.codec.encode(message))
    return Send(queue, ctx.key_prefix + task_id, data, options.delay_ms, eta_ms)


# ---- sending (client) ---------------------------------------------------------------------------------
def _prepare(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> tuple[Signature, Any]:
    sig = maybe_signature(sig, app=app).clone()
    task_id = options.pop("task_id", None)
    if options:
        sig.set(**options)
    if args or kwargs:
        sig = sig.clone(args, kwargs)
    res = freeze(app, sig, task_id)
    return sig, res


def plan_of(app: Celeriac, sig: Signature, *, check: bool = True) -> Plan:
    """The plan that starts a frozen canvas (client side)."""
    ctx = _Ctx(app, Plan(), None, None, check)
    _launch(ctx, sig, (), {}, Cont())
    return ctx.plan


def send(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """Send a canvas (``sig.apply_async``): freeze it, build its plan, write it to Redis.

    A plain task without workflow options takes the ordinary one-command send path.
    """
    if app.conf.task_always_eager:
        return apply_eager(app, sig, args, kwargs, options)
    if type(sig) is Signature and not (set(sig.options) | set(options)) & {"link", "link_error"}:
        merged = {**sig.options, **options}
        merged.pop("group_id", None), merged.pop("group_index", None)
        call_args = sig.args if sig.immutable else (*args, *sig.args)
        call_kwargs = dict(sig.kwargs) if sig.immutable else {**sig.kwargs, **kwargs}
        return app.send(sig.name, tuple(call_args), call_kwargs, _send_options_with_id(merged), task=sig.type)
    if type(sig) is group and not options:
        fast = _send_plain_group(app, sig, args, kwargs)
        if fast is not None:
            return fast
    if type(sig) is chord and not options:
        fast = _send_plain_chord(app, sig, args, kwargs)
        if fast is not None:
            return fast
    frozen, res = _prepare(app, sig, args, kwargs, options)
    store_for(app).apply_sync(plan_of(app, frozen), dedup=False)
    return res


def _plain_routes(app: Celeriac, members: list[Signature]) -> dict[str, tuple[str, Any]] | None:
    """``{task name: (queue, Task)}`` when every member is a plain msgpack task signature without
    options (the bulk path can encode it straight to bytes); None otherwise."""
    routes: dict[str, tuple[str, Any]] = {}
    for m in members:
        if type(m) is not Signature or m["options"]:
            return None
        name = m["task"]
        if name not in routes:
            task = m._type or app.tasks.get(name)
            serializer = (task.serializer if task is not None else None) or app.conf.task_serializer
            if serializer != "msgpack":
                return None
            routes[name] = (app.route(name, task), task)
    return routes


def _send_plain(
    app: Celeriac,
    members: list[Signature],
    routes: dict[str, tuple[str, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workflow: Any,
) -> list[AsyncResult[Any]]:
    """Encode plain members straight to bytes (``workflow(i, queue)``: the ``w`` field of member i)
    and send them through the bulk path (``enqueue_many``: one script call per 1,000 members)."""
    import gc

    from .broker.base import Enqueue
    from .message import encode_call, new_task_id

    signing_key = app.codec.signing_key
    limit = app.conf.max_message_bytes
    items: list[Enqueue] = []
    results: list[AsyncResult[Any]] = []
    paused = gc.isenabled()  # as in send_many: no cycles made, and a 100k-member scan is costly
    if paused:
        gc.disable()
    try:
        for i, m in enumerate(members):
            name = m["task"]
            queue, task = routes[name]
            if m["immutable"] or not (args or kwargs):
                call_args, call_kwargs = m["args"], m["kwargs"]
            else:
                call_args, call_kwargs = (*args, *m["args"]), {**m["kwargs"], **kwargs}
            if task is not None:
                task.check_arguments(call_args, call_kwargs)
            task_id = new_task_id()
            options = {"ir": False, "w": workflow(i, queue)}
            data = encode_call(task_id, name, call_args, call_kwargs, signing_key, options)
            if len(data) > limit:
                app._checked_size(data)
            items.append(Enqueue(queue, data))
            results.append(AsyncResult(task_id, app))
        if items:
            app.broker.enqueue_many(items)
    finally:
        if paused:
            gc.enable()
    return results


def _send_plain_group(app: Celeriac, g: group, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A group of plain tasks (no options, callbacks or nested primitives) through the bulk path;
    None when it needs the general path."""
    from .message import new_task_id

    if g.options.get("link") or g.options.get("link_error"):
        return None
    routes = _plain_routes(app, g.tasks)
    if routes is None:
        return None
    gid = g.options.get("task_id") or new_task_id()
    packed = _pack_id(gid)
    results = _send_plain(app, g.tasks, routes, args, kwargs, lambda i, q: {"g": packed, "i": i})
    return GroupResult(gid, list(results), app)


def _send_plain_chord(app: Celeriac, c: chord, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A chord whose header is plain tasks: the chord's state first, then the header through the
    bulk path (the body, any canvas, through the general one); None when it needs the general path."""
    from .message import new_task_id

    header, body = c.header, c.body
    if body is None or not header.tasks or header.options.get("link") or header.options.get("link_error"):
        return None
    if c.immutable or set(c.options) - {"task_id"}:
        return None
    routes = _plain_routes(app, header.tasks)
    if routes is None:
        return None
    body = body.clone()
    freeze(app, body, c.options.get("task_id"))
    gid = header.options.get("task_id") or new_task_id()
    ctx = _Ctx(app, Plan(), None, None, True)
    init = _chord_init(ctx, header.tasks, gid, body, Cont())
    store_for(app).apply_sync(Plan(chords=[init]), dedup=False)
    packed = _pack_id(gid)
    body_queue = init.queue

    def pointer(i: int, queue: str) -> dict[str, Any]:
        return {"d": [packed, i] if queue == body_queue else [packed, i, body_queue]}

    results = _send_plain(app, header.tasks, routes, args, kwargs, pointer)
    return result_of(app, body, GroupResult(gid, list(results), app))


def _send_options_with_id(merged: dict[str, Any]) -> Any:
    _normalize_times(merged)
    options = _send_options(merged)
    if merged.get("task_id") is not None or merged.get("ignore_result") is not None:
        options = replace(options, task_id=merged.get("task_id"), ignore_result=merged.get("ignore_result"))
    return options


# ---- the worker's side: what follows an outcome ------------------------------------------------------
def workflow_of(message: Message) -> dict[str, Any] | None:
    """The workflow fields of a message, or None for a plain task."""
    w = message.extra.get("w") if message.extra else None
    return w if isinstance(w, dict) else None


def request_fields(w: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """``(group_id, group_index)`` of a workflow member: its group's, or its chord's."""
    if w.get("g") is not None:
        return _unpack_id(w["g"]), int(w.get("i") or 0)
    ptr = w.get("d")
    if isinstance(ptr, list) and len(ptr) >= 2:
        return _unpack_id(ptr[0]), int(ptr[1])
    return None, None


def after_outcome(app: Celeriac, message: Message, queue: str, outcome: Any) -> Plan:
    """What follows the final outcome of a workflow message: its successors, or its failure's
    consequences. Retries and hand-backs have none (the task runs again)."""
    plan = Plan()
    w = workflow_of(message)
    if w is None or outcome.kind in ("retry", "release"):
        return plan
    if isinstance(w.get("r"), str):  # a chord body's outcome is final: the chord's state goes
        plan.forget.append((queue, w["r"]))
    if outcome.state is None:  # replaced: the replacement carries the workflow on
        return plan
    ctx = _Ctx(app, plan, message.root_id or message.id, message.id, False)
    if outcome.state is TaskState.SUCCESS:
        value = outcome.value
        for cb in w.get("k") or ():
            _safe_launch(ctx, cb, (value,), Cont(), queue)
        rest = w.get("c") or []
        ptr = w.get("d")
        if rest:
            _safe_launch(ctx, rest[0], (value,), Cont(list(rest[1:]), _ptr(ptr, queue)), queue)
        elif ptr is not None:
            gid, index, body_queue = _ptr(ptr, queue)  # type: ignore[misc]
            plan.parts.append(Part(body_queue, gid, int(index), True, _part_payload(message, outcome)))
        return plan
    record = outcome.record or ResultRecord(
        message.id, outcome.state, None, "builtins.Exception", outcome.reason
    )
    if outcome.store is not None:  # stored before what depends on it fails (get() reads it first)
        plan.stores.append(outcome.store)
    _fail(ctx, message.id, w, record, queue)
    return plan


def _ptr(ptr: Any, queue: str) -> list[Any] | None:
    """A chord pointer ``[chord id, index, body queue]`` from its wire form."""
    if ptr is None:
        return None
    return [_unpack_id(ptr[0]), ptr[1], ptr[2] if len(ptr) > 2 else queue]


def _pack_id(task_id: str) -> bytes | str:
    """A canonical UUID as its 16 bytes (20 bytes less on the wire), anything else as is."""
    try:
        u = uuid.UUID(task_id)
    except (ValueError, TypeError, AttributeError):
        return task_id
    return u.bytes if str(u) == task_id else task_id


def _unpack_id(raw: Any) -> str:
    if isinstance(raw, bytes) and len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    return str(raw)


def _part_payload(message: Message, outcome: Any) -> bytes:
    """What a header member leaves in its chord's hash: ``v`` + its msgpack value (the body decodes
    them all in one call), or ``r`` + its result record (a pickle task's value, signed with it)."""
    if message.serializer is None:
        packed: bytes = msgpack.packb(outcome.value, use_bin_type=True)
        return b"v" + packed
    if outcome.store is not None:
        return b"r" + bytes(outcome.store.payload)
    return b"r" + encode_record(ResultRecord(message.id, TaskState.SUCCESS, outcome.value))


def chord_values(app: Celeriac, chord_id: str, payloads: Sequence[bytes]) -> list[Any]:
    """The header's values from the members' payloads (in member order)."""
    if all(p[:1] == b"v" for p in payloads):  # all msgpack: one array, decoded in one call
        header = b"\xdd" + len(payloads).to_bytes(4, "big")
        return msgpack.unpackb(header + b"".join(p[1:] for p in payloads), raw=False, strict_map_key=False)  # type: ignore[no-any-return]
    codec = app.codec
    return [
        msgpack.unpackb(p[1:], raw=False, strict_map_key=False)
        if p[:1] == b"v"
        else codec.decode_result(chord_id, p[1:]).value
        for p in payloads
    ]


def _safe_launch(ctx: _Ctx, sig: Any, args: tuple[Any, ...], cont: Cont, queue: str) -> None:
    """Launch a successor; one that cannot be built (too large, not serializable) fails in its place."""
    node = maybe_signature(sig, app=ctx.app)
    sub = _Ctx(ctx.app, Plan(), ctx.root_id, ctx.parent_id, False, ctx.key_prefix)
    try:
        _launch(sub, node, args, {}, cont)
    except Exception as exc:
        logger.error("workflow step %r could not be sent: %r", node, exc)
        record = ResultRecord(
            "", TaskState.FAILURE, None, f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)
        )
        for task_id in ids_of(node):
            ctx.plan.stores.append(_failure_store(ctx.app, record, task_id))
        w = {"c": cont.chain, "d": cont.ptr}
        _fail(ctx, ids_of(node)[-1], w, record, queue, errbacks=False)
        return
    ctx.plan.extend(sub.plan)


def _failure_store(app: Celeriac, record: ResultRecord, task_id: str) -> StoreResult:
    copy = replace(record, task_id=task_id)
    return StoreResult(task_id, encode_record(copy), app.conf.result_expires_s)


def _fail(
    ctx: _Ctx, task_id: str, w: Mapping[str, Any], record: ResultRecord, queue: str, *, errbacks: bool = True
) -> None:
    """A workflow node failed: its errbacks run, every later step of its chain fails with the same
    error, and the chord it belongs to hears of it."""
    if errbacks:
        for eb in w.get("e") or ():
            _safe_launch(ctx, eb, (task_id,), Cont(), queue)
    for step in w.get("c") or ():
        for later in ids_of(step, ctx.app):
            ctx.plan.stores.append(_failure_store(ctx.app, record, later))
    ptr = _ptr(w.get("d"), queue)
    if ptr is not None:
        failure = msgpack.packb(
            [task_id, record.exc_type or "", record.exc_message or "", record.state.value]
        )
        ctx.plan.parts.append(Part(ptr[2], ptr[0], int(ptr[1]), False, failure))


def chord_failed(app: Celeriac, queue: str, chord_id: str, body: bytes, failure: bytes) -> Plan:
    """The follow-up of a failed chord (``chord_part.lua`` answered 'failed'): the body's result is
    FAILURE with ChordError naming the failed member, the body's errbacks run once, what follows the
    body fails too, and the chord's state is deleted."""
    plan = Plan()
    plan.forget.append((queue, chord_id))
    try:
        failed_id, exc_type, exc_message, _state = msgpack.unpackb(failure, raw=False)
        message = app.codec.decode(body)
    except (DecodeError, ValueError, TypeError) as exc:
        logger.error(
            "chord %s failed, and its stored state is unreadable (%s): its body cannot be failed",
            chord_id,
            exc,
        )
        return plan
    text = f"Dependency {failed_id} raised {exc_type.rpartition('.')[2] or 'an error'}: {exc_message}"
    record = ResultRecord(message.id, TaskState.FAILURE, None, _CHORD_ERROR, text)
    plan.stores.append(_failure_store(app, record, message.id))
    w = dict(workflow_of(message) or {})
    ctx = _Ctx(app, plan, message.root_id, message.id, False)
    if message.task == "celeriac.run_canvas":
        for inner in ids_of(message.kwargs.get("sig") or {}, app):
            plan.stores.append(_failure_store(app, record, inner))
    _fail(ctx, message.id, w, record, queue)
    return plan


def member_failed(
    app: Celeriac, data: bytes | Message, queue: str, state: TaskState, exc_type: str, exc_message: str
) -> None:
    """A message will never run (revoked, expired, dead-lettered): fail what depends on it.

    Stores the failure of every later step of its chain, runs its errbacks, and fails the chord it
    belongs to, so that nothing waits for it forever. Synchronous (admin commands, revoke); a no-op
    for a message that is not part of a workflow. Idempotent.
    """
    message = data if isinstance(data, Message) else app.codec.decode(data)
    plan = failure_plan(app, message, queue, state, exc_type, exc_message)
    if plan:
        store_for(app).apply_sync(plan, dedup=True)


def failure_plan(
    app: Celeriac, message: Message, queue: str, state: TaskState, exc_type: str, exc_message: str
) -> Plan:
    """The plan of :func:`member_failed` (empty for a message outside any workflow): the message's own
    result is stored as ``state`` too, so that ``get()`` on it does not wait forever."""
    plan = Plan()
    w = workflow_of(message)
    if w is None:
        return plan
    ctx = _Ctx(app, plan, message.root_id or message.id, message.id, False)
    record = ResultRecord(message.id, state, None, exc_type, exc_message)
    plan.stores.append(_failure_store(app, record, message.id))
    _fail(ctx, message.id, w, record, queue)
    return plan


# ---- replace ------------------------------------------------------------------------------------------
def replace_in_task(
    app: Celeriac, request: Request, sig: Signature, *, keep_ids: bool = False, args: tuple[Any, ...] = ()
) -> None:
    """``self.replace(sig)``: send ``sig`` in the running task's place. Its last node takes the task's
    id, callbacks, errbacks, chain rest and chord membership; its other ids are derived from the task's
    id, so a task that runs twice sends the same replacement (dispatched once)."""
    w = dict(request.workflow or {})
    node = maybe_signature(sig, app=app).clone()
    if not keep_ids:
        for eb in w.get("e") or ():
            _attach(node, "link_error", signature(eb, app=app))
        for cb in w.get("k") or ():
            _attach(node, "link", signature(cb, app=app))
        if isinstance(node, group) and not isinstance(node, chord) and (w.get("c") or w.get("d")):
            pass  # fan-in handled by _launch (a group with a continuation becomes a chord)
        freeze(app, node, request.id, base=request.id)
    plan = Plan()
    ctx = _Ctx(
        app, plan, request.root_id or request.id, request.id, False, key_prefix=f"replace:{request.id}:"
    )
    cont = Cont(list(w.get("c") or []), _ptr(w.get("d"), request.queue))
    _launch(ctx, node, args, {}, cont)
    runner = _EAGER.get()
    if runner is not None:
        runner.apply(plan)
    else:
        store_for(app).apply_sync(plan, dedup=True)


def _attach(node: Signature, key: str, cb: Signature) -> None:
    """Attach a callback to the node whose value is the canvas's value (chain: last; chord: body)."""
    target: Signature = node
    while True:
        if isinstance(target, chord) and target.body is not None:
            target = target.body
        elif isinstance(target, chain) and target.tasks:
            target = target.tasks[-1]
        else:
            break
    target.options.setdefault(key, []).append(cb)


# ---- results ------------------------------------------------------------------------------------------
def children_of(result: AsyncResult[Any]) -> list[Any]:
    record = result._fetch()
    children = getattr(record, "children", None) if record is not None else None
    return [AsyncResult(c, result.app) for c in children or ()]


def _encode_tree(res: Any) -> Any:
    if isinstance(res, GroupResult):
        return [res.id, [_encode_tree(r) for r in res.results]]
    return res.id


def _decode_tree(node: Any, app: Celeriac | None) -> Any:
    if isinstance(node, list):
        return GroupResult(node[0], [_decode_tree(n, app) for n in node[1]], app)
    return AsyncResult(node, app)


def save_group(res: GroupResult) -> None:
    app = res.app
    if app is None or app.backend is None:
        raise ChordError("GroupResult.save() needs an app with a result backend")
    record = ResultRecord(res.id, TaskState.SUCCESS, {"group": _encode_tree(res)})
    app.backend.store([StoreResult(res.id, encode_record(record), app.conf.result_expires_s)])


def restore_group(group_id: str, app: Celeriac | None) -> GroupResult | None:
    if app is None or app.backend is None:
        raise ChordError("GroupResult.restore() needs app= with a result backend")
    payload = app.backend.get(group_id)
    if payload is None:
        return None
    value = app.codec.decode_result(group_id, payload).value
    if not isinstance(value, dict) or "group" not in value:
        return None
    tree = _decode_tree(value["group"], app)
    return tree if isinstance(tree, GroupResult) else None


# ---- the store: plans carried out in Redis -------------------------------------------------------------
def store_for(app: Celeriac) -> Any:
    from .workflow_redis import RedisWorkflowStore

    store = getattr(app, "_workflow_store", None)
    if store is None:
        broker = app.broker
        url = getattr(broker, "url", None)
        if url is None:
            raise ChordError(
                "workflows (chain, group, chord, link) need a Redis broker; with memory:// use "
                "task_always_eager=True or sig.apply()"
            )
        store = RedisWorkflowStore(app, url, app.conf.key_prefix)
        app._workflow_store = store
    return store


# ---- eager mode -----------------------------------------------------------------------------------------
_EAGER: contextvars.ContextVar[_EagerRunner | None] = contextvars.ContextVar(
    "celeriac_eager_canvas", default=None
)


class _EagerRunner:
    """Runs a plan inline, through the same execution path as a worker (messages serialized), with
    the chord state and results in memory."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        self.queue: list[Send] = []
        self.chords: dict[str, dict[str, Any]] = {}
        self.records: dict[str, ResultRecord] = {}
        self.first_error: BaseException | None = None

    def apply(self, plan: Plan) -> None:
        for c in plan.chords:
            self.chords.setdefault(
                c.chord_id, {"n": c.size, "b": c.body, "k": c.needs_values, "r": {}, "f": None, "x": False}
            )
        self.queue.extend(plan.sends)
        for s in plan.stores:
            self.records[s.task_id] = self.app.codec.decode_result(s.task_id, s.payload)
        for p in plan.parts:
            state = self.chords.get(p.chord_id)
            if state is None or state["x"]:
                continue
            if p.ok:
                state["r"].setdefault(p.index, p.payload)
            elif p.index not in state["r"] and state["f"] is None:
                state["f"] = p.payload
            if state["f"] is not None:
                self.chords.pop(p.chord_id)
                self.apply(chord_failed(self.app, p.queue, p.chord_id, state["b"], state["f"]))
            elif len(state["r"]) >= state["n"]:
                state["x"] = True
                self.queue.append(Send(p.queue, "", state["b"]))
        for _queue, chord_id in plan.forget:
            state = self.chords.get(chord_id)
            if state is not None and (state["x"] or state["f"] is not None):
                self.chords.pop(chord_id, None)

    def run(self) -> None:
        from .worker.executor import Outcome

        executor = self.app.executor
        token = _EAGER.set(self)
        try:
            while self.queue:
                item = self.queue.pop(0)
                data = item.data
                while True:
                    prepared = executor.prepare(data, queue=item.queue, eager=True)
                    if isinstance(prepared, Outcome):
                        out = prepared
                        message = self.app.codec.decode(data) if prepared.task_id else None
                        break
                    message = prepared.message
                    w = workflow_of(message)
                    if w is not None and isinstance(w.get("r"), str):
                        prepared = self._with_values(prepared, w["r"])
                    out = executor.run_eager(prepared)
                    if out.kind != "retry":
                        break
                    data = out.retry_data
                if out.record is not None:
                    self.records[out.record.task_id] = out.record
                elif out.state is TaskState.SUCCESS and out.task_id:
                    self.records[out.task_id] = ResultRecord(out.task_id, TaskState.SUCCESS, out.value)
                if out.exc is not None and out.state is not None and self.first_error is None:
                    self.first_error = out.exc
                if message is not None:
                    self.apply(after_outcome(self.app, message, item.queue, out))
        finally:
            _EAGER.reset(token)

    def _with_values(self, job: Any, chord_id: str) -> Any:
        state = self.chords.get(chord_id)
        values = []
        if state is not None:
            values = chord_values(self.app, chord_id, [state["r"][i] for i in sorted(state["r"])])
            self.chords.pop(chord_id, None)
        return with_values(job, values)

    def fill(self, res: Any) -> None:
        """Give every result handle of the canvas its recorded outcome."""
        if isinstance(res, GroupResult):
            for r in res.results:
                self.fill(r)
        elif res is not None:
            record = self.records.get(res.id)
            if record is not None:
                res._record = record
        if res is not None and res.parent is not None:
            self.fill(res.parent)


def with_values(job: Any, values: list[Any]) -> Any:
    """A chord body's job with the header's values as its first argument."""
    message = replace(job.message, args=(values, *job.message.args))
    request = replace(job.request, args=message.args)
    return replace(job, message=message, request=request)


def apply_eager(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """Run a canvas inline (``sig.apply()`` / ``task_always_eager``)."""
    frozen, res = _prepare(app, sig, args, kwargs, options)
    runner = _EAGER.get()
    if runner is not None:  # a task running eagerly sends a canvas: it joins the same run
        runner.apply(plan_of(app, frozen))
        runner.run()
        runner.fill(res)
        return res
    runner = _EagerRunner(app)
    runner.apply(plan_of(app, frozen))
    runner.run()
    runner.fill(res)
    if runner.first_error is not None and app.conf.task_eager_propagates:
        raise runner.first_error
    return res


# ---- built-in tasks ------------------------------------------------------------------------------
def register_builtins(app: Celeriac) -> None:
    """``celeriac.map``, ``celeriac.starmap``, ``celeriac.accumulate``, ``celeriac.run_canvas``."""
    from . import canvas

    canvas._last_app[:] = [app]

    def _map(task: str, it: Sequence[Any]) -> list[Any]:
        fn = app.tasks[task]
        return [fn(item) for item in it]

    def _starmap(task: str, it: Sequence[Sequence[Any]]) -> list[Any]:
        fn = app.tasks[task]
        return [fn(*item) for item in it]

    def _accumulate(values: Any = None, *more: Any) -> Any:
        return values

    def _run_canvas(self: Any, *values: Any, sig: Mapping[str, Any]) -> None:
        replace_in_task(app, self.request, signature(sig, app=app), keep_ids=True, args=tuple(values))
        raise Replaced(self.request.id)

    for name, fn, bind in (
        ("celeriac.map", _map, False),
        ("celeriac.starmap", _starmap, False),
        ("celeriac.accumulate", _accumulate, False),
        ("celeriac.run_canvas", _run_canvas, True),
    ):
        if name not in app.tasks:
            app.task(name=name, bind=bind, ignore_result=False, typing=False)(fn)
