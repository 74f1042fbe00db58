"""The whole Redis key schema of celeriac, in one place.

Every key of one queue carries the queue name as a Redis Cluster hash tag (``{queue}``), so all keys a
script touches for one queue live in one slot. Keys that are not per queue are touched by single-key
commands only.

=====================================  ============  =============================================
key                                    type          bound / expiry
=====================================  ============  =============================================
``<prefix>:{<queue>}:ready``           stream        acked entries deleted or trimmed; group ``GROUP``
``<prefix>:{<queue>}:delayed``         sorted set    members leave when due (promoted to ready)
``<prefix>:{<queue>}:dead``            stream        capped at ``dead_letter_max`` entries
``<prefix>:{<queue>}:reclaimed``       hash          consumer -> deliveries taken from it; one
                                                     field per consumer that lost a lease, removed
                                                     with the consumer
``<prefix>:worker:<worker id>``        hash          TTL: ``worker_ttl_s``, refreshed by the worker
``<prefix>:workers``                   sorted set    ids scored by expiry; stale ids pruned; TTL
``<prefix>:queues``                    set           queue names workers consumed; TTL, refreshed
``<prefix>:result:<task id>``          list (1 el.)  TTL: ``result_expires`` (errors: same or shorter)
``<prefix>:{<result key>}:progress``   string        TTL: the task's result TTL (``update_state``);
                                                     in the result key's slot (see ``slot_mate``)
``<prefix>:revoked``                   stream        entries older than ``revoke_expires_s`` trimmed
                                                     at each revoke, capped at ``revoked_max``; the
                                                     key expires ``revoke_expires_s`` after the
                                                     last revoke
``<prefix>:{<queue>}:unique:<key>``    string        task id of the queued/running unique task;
                                                     TTL ``unique_for``; deleted when it finishes
``<prefix>:{<queue>}:levels``          set           priority levels 1..9 ever used on the queue
                                                     (at most 9 members)
``<prefix>:{<queue>}:p<n>:ready``      stream        priority level n (1..9) of the queue; like
``<prefix>:{<queue>}:p<n>:delayed``    sorted set    ``ready`` / ``delayed`` / ``reclaimed`` (level 0
``<prefix>:{<queue>}:p<n>:reclaimed``  hash          is the queue's own keys; dead letters of every
                                                     level go to the queue's ``dead`` stream)
``<prefix>:{<queue>}:chord:<id>``      hash          TTL ``max(result_expires, 1 h)``, refreshed; deleted
                                                     when the chord completes (celeriac.workflow)
``<prefix>:{<queue>}:fired``           sorted set    workflow dispatch keys; entries expire (same TTL)
=====================================  ============  =============================================

Periodic tasks (``celeriac.beat.store``) and flow control (``celeriac.flow.keys``) name their own keys
there, under the same prefix and hash-tag rule: ``{<queue>}:beat``, ``beat:entries``, ``beat:rev``,
``{<queue>}:rl:*``, ``{<queue>}:cl:*``, ``flow``.

A sharded queue (``queue_shards``) has these keys once per shard: shard 0 is the queue itself, shard
k the queue ``<queue>~k.<salt>`` (its own hash tag, hence its own slot; see
``celeriac.broker._shards``). ``<prefix>:{<queue>}:shards`` (a set, one member per ``queue_shards``
value ever used on the queue: a few) says which shard names may still hold tasks after a change.
Result keys carry no queue tag: on a Redis Cluster they are written by single-key scripts in their
own slot, after the lease check (docs/scaling.md).

Channels (pub/sub, not keys): ``<prefix>:{<queue>}:wake`` tells workers a delayed message became the
earliest one of its queue, or (payload ``levels``) that the queue has a new priority level.
``<prefix>:{<prefix>:result:<task id>}:progress`` (channel) carries the task's ``update_state``
writes to ``AsyncResult.get(on_message=...)``.

Priority levels are addressed as queues of their own: :func:`level_queue` names level ``n`` of queue
``q`` ``q\\x06\\x16n`` (the separator kombu uses), and :meth:`KeySchema.queue` maps such a name to the
level's keys, all in ``q``'s hash slot. So every per-queue operation (settle, extend, reclaim, release,
promote) works on a level unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes when it has one (``{...}``, non-empty), else None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def slot_mate(prefix: str, key: str, suffix: str) -> str:
    """A key named after ``key`` that Redis Cluster puts in ``key``'s hash slot, under ``prefix``.

    A key with a hash tag shares it with ``key:suffix``; a key without one is hashed whole, so the
    mate carries the whole key as its tag (``<prefix>:{key}:suffix``: still under the prefix, so
    ACL key patterns and scans of ``<prefix>:*`` cover it). Either way ``key`` itself keeps its name,
    so stored keys (results) are read as before. ``prefix`` has no braces (the config refuses them),
    and a ``key`` without a tag has no ``}`` (see :meth:`KeySchema.result`).
    """
    if hash_tag(key) is not None:
        return f"{key}:{suffix}"
    return f"{prefix}:{{{key}}}:{suffix}"


#: consumer group every worker of every queue joins
GROUP = "celeriac"

#: separates a queue name from its priority level in a level queue's name (as kombu does)
LEVEL_SEP = "\x06\x16"
#: priority levels: 0 (highest, the queue's own stream) .. 9 (lowest)
PRIORITY_LEVELS = range(10)


def level_queue(queue: str, level: int) -> str:
    """The name of priority level ``level`` of ``queue`` (level 0 is the queue itself)."""
    return queue if level == 0 else f"{queue}{LEVEL_SEP}{level}"


def split_level(name: str) -> tuple[str, int]:
    """``(queue, level)`` of a (level) queue name."""
    base, sep, level = name.rpartition(LEVEL_SEP)
    if sep and level.isdigit():
        return base, int(level)
    return name, 0


@dataclass(frozen=True)
class QueueKeys:
    """The keys (and wake channel) of one queue."""

    name: str
    ready: str
    delayed: str
    dead: str
    wake: str
    #: consumers that lost deliveries to a reclaim: only their settlements need the ownership check
    reclaimed: str


@dataclass(frozen=True)
class KeySchema:
    """Builds key names under a prefix (``celeriac`` unless configured)."""

    prefix: str = "celeriac"

    def queue(self, name: str) -> QueueKeys:
        if LEVEL_SEP in name:
            queue, level = split_level(name)
            if level:
                base = f"{self.prefix}:{{{queue}}}"
                own = f"{base}:p{level}"
                return QueueKeys(
                    name, f"{own}:ready", f"{own}:delayed", f"{base}:dead", f"{base}:wake", f"{own}:reclaimed"
                )
        base = f"{self.prefix}:{{{name}}}"
        return QueueKeys(
            name, f"{base}:ready", f"{base}:delayed", f"{base}:dead", f"{base}:wake", f"{base}:reclaimed"
        )

    def levels(self, queue: str) -> str:
        """The set of priority levels (1..9) used on ``queue``."""
        return f"{self.prefix}:{{{queue}}}:levels"

    def shardings(self, queue: str) -> str:
        """The set of shard counts (``queue_shards`` > 1) ``queue`` was ever sent to or consumed with:
        where a worker looks for tasks left in the shards of an earlier setting (broker._shards)."""
        return f"{self.prefix}:{{{queue}}}:shards"

    def unique(self, queue: str, key: str) -> str:
        """The lock of a unique task on ``queue`` (in the queue's hash slot)."""
        return f"{self.prefix}:{{{queue}}}:unique:{key}"

    @property
    def revoked(self) -> str:
        """The revocation stream (task ids revoked recently)."""
        return f"{self.prefix}:revoked"

    def progress(self, task_id: str) -> str:
        """The latest ``update_state`` of a task (key and pub/sub channel), in the result key's hash
        slot: store_progress.lua reads the result key and writes this one in one atomic step."""
        return slot_mate(self.prefix, self.result(task_id), "progress")

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        key = f"{self.prefix}:result:{task_id}"
        if "}" in task_id and hash_tag(key) is None:
            # an id like "}x" or "{}x": no key named after this one could share its slot (see
            # slot_mate), so such ids (never generated; only user-supplied) get a tag of their own
            return f"{self.prefix}:result:{{r{task_id}}}"
        return key
