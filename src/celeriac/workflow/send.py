"""Sending a canvas (``sig.apply_async``): a plain task takes the ordinary send path, a group or a
chord of plain tasks the bulk path (members encoded straight to bytes, one script call per 1,000),
anything else is frozen and its plan written to Redis (build.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..canvas import Signature, chord, group
from ..result import AsyncResult, GroupResult
from .build import (
    _chord_init,
    _Ctx,
    _normalize_times,
    _prepare,
    _send_options,
    freeze,
    plan_of,
    result_of,
    store_for,
)
from .plan import Cont, Plan, _pack_id

if TYPE_CHECKING:
    from ..app import Celeriac


def send(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """Send a canvas (``sig.apply_async``): freeze it, build its plan, write it to Redis.

    A plain task without workflow options takes the ordinary one-command send path.
    """
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

    from ..broker.base import Enqueue
    from ..message import encode_call, new_task_id

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
    from ..message import new_task_id

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
    from ..message import new_task_id

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
