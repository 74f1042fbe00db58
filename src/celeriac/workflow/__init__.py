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

from .api import send
from .build import freeze, ids_of, plan_of, result_of
from .builtins import register_builtins
from .eager import apply_eager
from .outcome import after_outcome, chord_failed, failure_plan, member_failed, replace_in_task
from .plan import Plan, derive_id, workflow_of

__all__ = [
    "Plan",
    "after_outcome",
    "apply_eager",
    "chord_failed",
    "derive_id",
    "failure_plan",
    "freeze",
    "ids_of",
    "member_failed",
    "plan_of",
    "register_builtins",
    "replace_in_task",
    "result_of",
    "send",
    "workflow_of",
]
