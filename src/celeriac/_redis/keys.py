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
=====================================  ============  =============================================

A sharded queue (``queue_shards``) has these keys once per shard: shard 0 is the queue itself, shard
k the queue ``<queue>~k.<salt>`` (its own hash tag, hence its own slot; see
``celeriac.broker.redis.shard_names``). Result keys carry no queue tag: on a Redis Cluster they are
written by single-key scripts in their own slot, after the lease check (docs/scaling.md).

Channels (pub/sub, not keys): ``<prefix>:{<queue>}:wake`` tells workers a delayed message became the
earliest one of its queue.
"""

from __future__ import annotations

from dataclasses import dataclass

#: consumer group every worker of every queue joins
GROUP = "celeriac"


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
        base = f"{self.prefix}:{{{name}}}"
        return QueueKeys(
            name, f"{base}:ready", f"{base}:delayed", f"{base}:dead", f"{base}:wake", f"{base}:reclaimed"
        )

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        return f"{self.prefix}:result:{task_id}"
