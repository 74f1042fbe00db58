"""Workflow links of a task, both ways: what its own record says (parent, root, a chain's next step,
its group or chord and index, the chord it is the body of) and what the ``m:rel`` index says about it
(the tasks whose parent it is; the members and body of a group or chord of that id).

A record carries its links as details (see :func:`celeriac.monitor.recorder.workflow_links`); the
index is written by ``record.lua`` from the same details, so a link exists once the linked task's
outcome is recorded. One pipelined round trip reads every id of a page in every queue (a group may
span queues): ``ZRANGEBYLEX`` over the id's prefix, at most ``limit`` members each, and a
``ZLEXCOUNT`` for the total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .keys import monitor_keys

#: members listed per id (the count says how many there are)
MEMBERS_SHOWN = 200


@dataclass(frozen=True)
class Linked:
    """One ``m:rel`` member: ``task_id`` is a child (``c``), group member (``g``), chord header
    member (``h``) or chord body (``b``) of the id it was read under."""

    kind: str
    index: int | None
    task_id: str
    queue: str


def related(
    client: Any, prefix: str, ids: Sequence[str], queues: Sequence[str], limit: int = MEMBERS_SHOWN
) -> dict[str, tuple[list[Linked], int]]:
    """Per id: its linked tasks (sorted by kind, then index; at most ``limit``) and their count."""
    if not ids or not queues:
        return {i: ([], 0) for i in ids}
    pipe = client.pipeline(transaction=False)
    for i in ids:
        low, high = b"[" + i.encode() + b"\x00", b"[" + i.encode() + b"\x00\xff"
        for q in queues:
            k = monitor_keys(prefix, q)
            pipe.zrangebylex(k.rel, low, high, start=0, num=limit)
            pipe.zlexcount(k.rel, low, high)
    replies = iter(pipe.execute(raise_on_error=False))
    out: dict[str, tuple[list[Linked], int]] = {}
    for i in ids:
        found: list[Linked] = []
        count = 0
        for q in queues:
            members, n = next(replies), next(replies)
            if isinstance(n, int):
                count += n
            if not isinstance(members, list):
                continue  # an older Redis, a key of another type: nothing linked
            for m in members:
                parts = (m if isinstance(m, bytes) else str(m).encode()).split(b"\x00", 3)
                if len(parts) != 4:
                    continue
                idx = parts[2].decode()
                found.append(
                    Linked(parts[1].decode(), int(idx) if idx.isdigit() else None, parts[3].decode(), q)
                )
        found.sort(key=lambda x: (x.kind, x.index if x.index is not None else -1, x.task_id))
        out[i] = (found[:limit], count)
    return out


def _members(links: list[Linked], kinds: str) -> list[dict[str, Any]]:
    return [{"id": x.task_id, "index": x.index, "queue": x.queue} for x in links if x.kind in kinds]


def workflow(
    client: Any, prefix: str, task_id: str, details: Mapping[str, str] | None, queues: Sequence[str]
) -> dict[str, Any] | None:
    """The links of ``task_id`` (a task, or a group or chord id) for the task page and
    ``/api/tasks/<id>``; None when it has none (a plain task)."""
    d = details or {}
    ids = [task_id]
    for key in ("group", "chord", "body_of"):
        if d.get(key) and d[key] not in ids:
            ids.append(d[key])
    rel = related(client, prefix, ids, queues)
    mine, mine_n = rel[task_id]
    # an id is a task's (children: kind c) or a group's or chord's (members and body), never both
    children = _members(mine, "c")
    body_ids = [x.task_id for x in mine if x.kind == "b"]
    out: dict[str, Any] = {
        "parent_id": d.get("parent"),
        "root_id": d.get("root"),
        "next_ids": [i for i in [d.get("next"), *(d.get("links") or "").split()] if i],
        "children": children,
        "children_count": mine_n if len(children) == len(mine) else len(children),
        "members": _members(mine, "gh"),
        "members_count": mine_n - len(body_ids) if not children else 0,
        "body_ids": body_ids,
        "group": None,
        "chord": None,
        "body_of": None,
    }
    if d.get("group"):
        links, n = rel[d["group"]]
        out["group"] = {
            "id": d["group"],
            "index": _int(d.get("gi")),
            "members": _members(links, "g"),
            "count": n,
        }
    if d.get("chord"):
        links, n = rel[d["chord"]]
        members = _members(links, "h")
        body = [x.task_id for x in links if x.kind == "b"]
        out["chord"] = {
            "id": d["chord"],
            "index": _int(d.get("ci")),
            "members": members,
            "count": n - len(body),
            "body_ids": body,
        }
    if d.get("body_of"):
        links, n = rel[d["body_of"]]
        members = _members(links, "h")
        out["body_of"] = {
            "id": d["body_of"],
            "members": members,
            "count": n - sum(x.kind == "b" for x in links),
        }
    empty = not (
        out["parent_id"]
        or out["root_id"]
        or out["next_ids"]
        or mine
        or out["group"]
        or out["chord"]
        or out["body_of"]
    )
    return None if empty else out


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None
