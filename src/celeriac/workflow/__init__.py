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

from typing import Any

# Names load on first use: an app registers its built-in tasks (``builtins``) when it is created,
# and a producer that never sends a canvas eagerly should not import eager mode (tests/unit/test_layers.py).
_LAZY = {
    "Plan": ".plan",
    "after_outcome": ".outcome",
    "apply_eager": ".eager",
    "chord_failed": ".outcome",
    "derive_id": ".plan",
    "failure_plan": ".outcome",
    "freeze": ".build",
    "ids_of": ".build",
    "member_failed": ".outcome",
    "plan_of": ".build",
    "register_builtins": ".builtins",
    "replace_in_task": ".outcome",
    "result_of": ".build",
    "send": ".api",
    "workflow_of": ".plan",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
