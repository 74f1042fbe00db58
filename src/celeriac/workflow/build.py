"""Freezing a canvas (every id fixed before anything is sent), its result handles, and the plan that
starts it: messages that carry their continuation, chords created before their members are sent.
Plain groups and chords of plain tasks take the bulk path.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._clock import wall_ms
from ..canvas import Signature, chain, chord, group, maybe_signature
from ..exceptions import ChordError
from ..message import Message
from ..result import AsyncResult, GroupResult
from ..task import normalize_options
from .plan import ChordInit, Cont, Plan, Send, _pack_id, derive_id

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger("celeriac.workflow")

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
    "priority",
    "unique_key",
    "unique_for",
)
_CHORD_ERROR = f"{ChordError.__module__}.{ChordError.__qualname__}"


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
        from ..canvas import _distribute_chain_options

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


def _wire_chain(steps: list[Any]) -> list[Any]:
    """The rest of a chain for the wire: plain dicts, and a task step without the fields left at their
    defaults (no arguments, not immutable): every later hop decodes and encodes the rest again, so
    fewer objects make each hop cheaper. ``Signature(dict)`` restores the defaults when it is read."""
    out = _plain(steps)
    for step in out:
        if isinstance(step, dict) and step.get("subtask_type", "") is None:
            del step["subtask_type"]
            if step.get("immutable", True) is False:
                del step["immutable"]
            for key in ("args", "kwargs"):
                if key in step and not step[key]:
                    del step[key]
    return out  # type: ignore[no-any-return]


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
        w["c"] = cont.chain if cont.wire else _wire_chain(cont.chain)
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
        eta_in_message = wall_ms(app.clock) + options.delay_ms
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


# ---- the store: plans carried out in Redis -------------------------------------------------------------
def store_for(app: Celeriac) -> Any:
    from .redis import RedisWorkflowStore

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
