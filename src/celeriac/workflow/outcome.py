"""What follows a workflow task's final outcome: its successors, or its failure's consequences
(later chain steps fail, errbacks run, its chord fails); a failed chord's follow-up; ``replace``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgpack

from ..canvas import Signature, chain, chord, group, maybe_signature, signature
from ..exceptions import DecodeError
from ..message import Message
from ..record import ResultRecord, ResultWrite, encode_record
from ..states import TaskState
from .build import _CHORD_ERROR, _Ctx, _launch, freeze, ids_of, store_for
from .plan import EAGER, Cont, Part, Plan, _ptr, workflow_of

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..context import Request
    from ..execution import Job

logger = logging.getLogger("celeriac.workflow")


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
        started = [*(w.get("k") or ()), *(w.get("c") or [])[:1]]
        for cb in w.get("k") or ():
            _safe_launch(ctx, cb, (value,), Cont(), queue)
        rest = w.get("c") or []
        ptr = w.get("d")
        if rest:
            _safe_launch(ctx, rest[0], (value,), Cont(rest[1:], _ptr(ptr, queue), wire=True), queue)
        elif ptr is not None:
            gid, index, body_queue = _ptr(ptr, queue)  # type: ignore[misc]
            payload = _part_payload(message, outcome, int(index))
            plan.parts.append(Part(body_queue, gid, int(index), True, payload))
        if started and outcome.record is not None and outcome.store is not None:
            _record_children(app, message, outcome, started)
        return plan
    record = outcome.record or ResultRecord(
        message.id, outcome.state, None, "builtins.Exception", outcome.reason
    )
    if outcome.store is not None:  # stored before what depends on it fails (get() reads it first)
        plan.stores.append(outcome.store)
    _fail(ctx, message.id, w, record, queue)
    return plan


def _record_children(app: Celeriac, message: Message, outcome: Any, started: list[Any]) -> None:
    """Write the ids of what this outcome started into its result record (``AsyncResult.children``)."""
    ids = tuple(str(node.get("options", {}).get("task_id")) for node in started if isinstance(node, Mapping))
    outcome.record.children = tuple(i for i in ids if i != "None")
    try:
        outcome.store.payload = app.codec.encode_result(outcome.record, message)
    except Exception:  # the record encoded once already; keep it without children rather than fail
        outcome.record.children = ()


#: msgpack extension type of a member value kept in its (pickled, maybe signed) result record
_RECORD_EXT = 1


def _part_payload(message: Message, outcome: Any, index: int) -> bytes:
    """What a header member appends to its chord's values: its index and its value, two msgpack
    objects; a pickle task's value stays in its result record (signed), carried as an extension."""
    value: Any = outcome.value
    if message.serializer is not None:
        record = (
            bytes(outcome.store.payload)
            if outcome.store is not None
            else encode_record(ResultRecord(message.id, TaskState.SUCCESS, outcome.value))
        )
        value = msgpack.ExtType(_RECORD_EXT, record)
    packed: bytes = msgpack.packb(index) + msgpack.packb(value, use_bin_type=True)
    return packed


def chord_values(app: Celeriac, chord_id: str, size: int, blob: bytes) -> list[Any]:
    """The header's values from the members' ``index, value`` pairs in member order (Redis sorted
    them): one msgpack decode and a slice, no Python loop per member."""
    flat = msgpack.unpackb(b"\xdd" + (2 * size).to_bytes(4, "big") + blob, raw=False, strict_map_key=False)
    values: list[Any] = flat[1::2]
    if any(marker in blob for marker in (b"\xc7", b"\xc8", b"\xc9")):  # maybe a record (extension)
        values = [
            app.codec.decode_result(chord_id, v.data).value
            if type(v) is msgpack.ExtType and v.code == _RECORD_EXT
            else v
            for v in values
        ]
    return values


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


def _failure_store(app: Celeriac, record: ResultRecord, task_id: str) -> ResultWrite:
    copy = replace(record, task_id=task_id)
    return ResultWrite(task_id, encode_record(copy), app.conf.result_expires_s)


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
        carry_out_sync(app, plan)


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
    runner = EAGER.get()
    if runner is not None:
        runner.apply(plan)
    else:
        carry_out_sync(app, plan)


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


def with_values(job: Job, values: list[Any]) -> Job:
    """A chord body's job with the header's values as its first argument."""
    message = replace(job.message, args=(values, *job.message.args))
    request = replace(job.request, args=message.args)
    return replace(job, message=message, request=request)


def carry_out_sync(app: Celeriac, plan: Plan) -> None:
    """Carry out a plan on the app's Redis (successors deduplicated), with the follow-up of any chord
    that failed."""
    while plan:
        failed = store_for(app).apply_sync(plan, dedup=True)
        plan = Plan()
        for queue, chord_id, body, failure in failed:
            plan.extend(chord_failed(app, queue, chord_id, body, failure))
