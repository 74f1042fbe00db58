"""Durable writes on a Redis Cluster (``broker_wait_replicas``): each node's writes, then a WAIT, on
one connection of that node.

``WAIT`` counts the replicas that hold the writes made *on the connection it is sent on*. redis-py's
cluster client routes each command by its key and sends a redirected command (``MOVED``, ``ASK``) or
one whose connection failed again on whatever connection it takes next, so a ``WAIT`` sent through it
would not know which writes it covers. Here the writes are grouped by the node that serves their slot,
and each group is sent with one ``WAIT`` behind it on one connection of that node:

* a write answered ``MOVED``, ``TRYAGAIN`` or ``CLUSTERDOWN`` did not run: it is sent again once the
  slot map is refreshed, in the next round, with that round's ``WAIT``;
* ``ASK`` (its slot is being migrated and its key already moved): sent again to the importing node,
  behind ``ASKING``, with a ``WAIT`` there;
* a connection error may leave writes run but unconfirmed: the group is sent again after a refresh
  (at least once, as any send whose reply was lost);
* ``NOSCRIPT`` (the node's script cache is empty): the script is loaded there and the call sent again.

Every write answered is confirmed by the ``WAIT`` of its own round, or the call raises
(``check_acked``): a write is never reported durable on the word of another connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.exceptions

from ..exceptions import BrokerError

#: a routing key (any key of the command: all of a call's keys share one slot), the command, and the
#: script it runs (None for a plain command), loaded on the node that answers NOSCRIPT
Item = tuple[Any, tuple[Any, ...], Any]

#: rounds before giving up (a slot moving again and again, a cluster without a majority)
ROUNDS = 6
_NOT_RUN = (redis.exceptions.MovedError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _Round:
    """The bookkeeping shared by the sync and the asyncio loops."""

    def __init__(self, items: Sequence[Item], check_acked: Callable[[Any], None]) -> None:
        self.items = items
        self.check_acked = check_acked
        self.replies: list[Any] = [None] * len(items)
        self.todo = list(range(len(items)))
        self.ask: dict[int, Any] = {}  # item -> the node an ASK sent it to

    def groups(self, node_of: Callable[[Any], Any]) -> list[tuple[Any, list[int], set[int]]]:
        asked, self.ask = self.ask, {}
        out: dict[str, tuple[Any, list[int], set[int]]] = {}
        for i in self.todo:
            node = asked.get(i) or node_of(self.items[i][0])
            group = out.setdefault(node.name, (node, [], set()))
            group[1].append(i)
            if i in asked:
                group[2].add(i)
        return list(out.values())

    def take(
        self, idx: list[int], acked: Any, answers: list[Any], redo: list[int], node_of: Any
    ) -> tuple[bool, list[Any]]:
        """Sort one group's answers; returns (refresh the slot map, scripts to load on the node)."""
        if isinstance(acked, _LOST):
            redo += idx
            return True, []
        if isinstance(acked, Exception):
            raise acked
        refresh, load, confirmed = False, [], False
        for i, reply in zip(idx, answers):
            if isinstance(reply, redis.exceptions.NoScriptError) and self.items[i][2] is not None:
                load.append(self.items[i][2])
                redo.append(i)
            elif isinstance(reply, redis.exceptions.AskError):
                target = node_of(reply.node_addr)
                if target is not None:
                    self.ask[i] = target
                else:
                    refresh = True
                redo.append(i)
            elif isinstance(reply, (*_NOT_RUN, *_LOST)):  # not run, or not known to have run
                refresh = True
                redo.append(i)
            elif isinstance(reply, Exception):
                raise reply
            else:
                self.replies[i] = reply
                confirmed = True
        if confirmed:
            self.check_acked(acked)  # raises when too few replicas hold this round's writes
        return refresh, load


def _commands(
    items: Sequence[Item], idx: list[int], asking: set[int], wait: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in idx:
        if i in asking:
            out.append(("ASKING",))
        out.append(items[i][1])
    out.append(wait)
    return out


def _answers(idx: list[int], asking: set[int], out: list[Any]) -> tuple[Any, list[Any]]:
    """(the WAIT's reply, one reply per item) from a group's replies, ASKING's left out."""
    answers, k = [], 0
    for i in idx:
        k += i in asking
        answers.append(out[k])
        k += 1
    return out[k], answers


def run_then_wait(
    cluster: Any, items: Sequence[Item], replicas: int, timeout_ms: int, check_acked: Callable[[Any], None]
) -> list[Any]:
    """Run ``items`` on a sync ``redis.RedisCluster``, each node's share followed by a WAIT on the
    same connection; their replies in order. Raises what a command raised, or ``BrokerError``."""
    r = _Round(items, check_acked)
    wait = ("WAIT", replicas, timeout_ms)

    def node_at(addr: Any) -> Any:
        return cluster.get_node(host=addr[0], port=addr[1])

    for _ in range(ROUNDS):
        redo: list[int] = []
        refresh = False
        for node, idx, asking in r.groups(cluster.get_node_from_key):
            client = cluster.get_redis_connection(node)
            try:
                pipe = client.pipeline(transaction=False)
                for command in _commands(items, idx, asking, wait):
                    pipe.execute_command(*command)
                acked, answers = _answers(idx, asking, pipe.execute(raise_on_error=False))
            except _LOST as exc:
                acked, answers = exc, []
            again, load = r.take(idx, acked, answers, redo, node_at)
            refresh = refresh or again
            for script in {id(s): s for s in load}.values():
                client.script_load(script.text)
        if not redo:
            return r.replies
        if refresh:
            cluster.nodes_manager.initialize()
        r.todo = redo
    raise BrokerError(f"Redis Cluster: writes could not be confirmed on their nodes in {ROUNDS} rounds")


async def arun_then_wait(
    cluster: Any, items: Sequence[Item], replicas: int, timeout_ms: int, check_acked: Callable[[Any], None]
) -> list[Any]:
    """:func:`run_then_wait` on an asyncio ``RedisCluster`` (one connection of each node's pool per
    group, taken under the client's connection permits when it has them)."""
    from redis.asyncio.cluster import PipelineCommand

    r = _Round(items, check_acked)
    wait = ("WAIT", replicas, timeout_ms)
    permits: asyncio.Semaphore | None = getattr(cluster, "_permits", None)

    def node_at(addr: Any) -> Any:
        return cluster.get_node(host=addr[0], port=addr[1])

    async def send(node: Any, commands: list[PipelineCommand]) -> None:
        if permits is None:
            await node.execute_pipeline(commands)
            return
        async with permits:
            await node.execute_pipeline(commands)

    for _ in range(ROUNDS):
        redo: list[int] = []
        refresh = False
        for node, idx, asking in r.groups(cluster.get_node_from_key):
            commands = [PipelineCommand(k, *c) for k, c in enumerate(_commands(items, idx, asking, wait))]
            try:
                await send(node, commands)
                acked, answers = _answers(idx, asking, [c.result for c in commands])
            except _LOST as exc:
                acked, answers = exc, []
            again, load = r.take(idx, acked, answers, redo, node_at)
            refresh = refresh or again
            for script in {id(s): s for s in load}.values():
                await cluster.execute_command("SCRIPT", "LOAD", script.text, target_nodes=node)
        if not redo:
            return r.replies
        if refresh:
            await cluster.nodes_manager.initialize()
        r.todo = redo
    raise BrokerError(f"Redis Cluster: writes could not be confirmed on their nodes in {ROUNDS} rounds")
