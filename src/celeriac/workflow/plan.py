"""The data of a workflow plan, and the small helpers every part of ``celeriac.workflow`` shares.

A plan is what carries a workflow on: messages to dispatch, chords to create, results to store,
chord members to count, chord states to delete. Building one is ``build``/``outcome``'s job;
carrying it out is ``redis`` (a worker's or a client's Redis) or ``eager`` (in memory).
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..message import Message
from ..record import ResultWrite

_NS = uuid.UUID("6f1c6a3e-51b5-4b0a-9d2e-8f5cbd3a7c11")


def derive_id(base: str, tag: str) -> str:
    """A task id fixed by ``base`` and ``tag`` (the same on every run of the task that makes it)."""
    return str(uuid.uuid5(_NS, f"{base}/{tag}"))


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
    stores: list[ResultWrite] = field(default_factory=list)
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
    #: ``chain`` is as decoded from a message (plain lists and dicts already): it is sent on as is.
    #: Converting it again would cost each hop time in proportion to the steps still to come.
    wire: bool = False


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


#: the eager run in progress in this context (a task replacing itself joins it): see ``eager``
EAGER: contextvars.ContextVar[Any] = contextvars.ContextVar("celeriac_eager_canvas", default=None)
