"""Reading many streams of a Redis Cluster, each in its own hash slot, without polling.

On one server a worker blocks in one ``XREADGROUP`` over all its streams. On a cluster that command
may only name keys of one slot, and every queue (and every shard of a sharded queue) is its own slot.
So a worker first sweeps its streams without blocking (one read per stream, all at once), and when
they are all empty it blocks on every stream at once, one connection per stream, each connection to
the node that serves the stream's slot. As soon as one read returns messages the others are ended
early with ``CLIENT UNBLOCK`` (a blocked read that already got a message still returns it), and every
message read is handed back: none stays owned-but-unknown in the pending list.

A read that meets ``MOVED``/``ASK`` (a slot migrated) or a dead node (failover) drops its connection
and asks the cluster client to refresh its slot map; the next fetch reads from the new owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import Connection


class StreamReader:
    """One dedicated connection per stream, to the node serving the stream's slot."""

    def __init__(self, cluster: Any, socket_timeout_s: float) -> None:
        self._cluster = cluster
        self._socket_timeout_s = socket_timeout_s
        # stream -> (connection, its CLIENT ID, node address)
        self._conns: dict[str, tuple[Connection, int, tuple[str, int]]] = {}
        self._kwargs: dict[str, Any] = {}

    async def _conn(self, stream: str) -> tuple[Connection, int, tuple[str, int]]:
        found = self._conns.get(stream)
        if found is not None:
            return found
        if not self._cluster.nodes_manager.slots_cache:
            await self._cluster.initialize()
        node = self._cluster.get_node_from_key(stream)
        kwargs = {**node.connection_kwargs, "socket_timeout": self._socket_timeout_s}
        conn = node.connection_class(**kwargs)
        await conn.connect()
        await conn.send_command("CLIENT", "ID")
        client_id = int(await conn.read_response())
        found = (conn, client_id, (node.host, node.port))
        self._conns[stream] = found
        return found

    async def _drop(self, stream: str) -> None:
        found = self._conns.pop(stream, None)
        if found is not None:
            await found[0].disconnect()

    async def _refresh(self) -> None:
        try:
            await self._cluster.nodes_manager.initialize()
        except (redis.RedisError, OSError):
            pass  # the next fetch tries again

    async def read(self, stream: str, args: Sequence[Any]) -> Any:
        """Run ``XREADGROUP`` (``args``, naming only ``stream``) on the stream's connection. A moved slot
        or a lost node: drop the connection, refresh the slot map, return None (nothing read)."""
        try:
            conn, _id, _node = await self._conn(stream)
            await conn.send_command(*args)
            return await conn.read_response()
        except (redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.TryAgainError):
            await self._drop(stream)
            await self._refresh()
            return None
        except (redis.ConnectionError, redis.TimeoutError, OSError, redis.exceptions.ClusterDownError):
            await self._drop(stream)
            await self._refresh()
            return None
        except asyncio.CancelledError:
            await self._drop(stream)  # a half-read reply must not be read by the next command
            raise

    async def read_all(self, calls: Sequence[tuple[str, Sequence[Any]]], blocking: bool) -> list[Any]:
        """Run one read per stream at once; when ``blocking``, the first non-empty reply ends the others
        (``CLIENT UNBLOCK``) and every reply is collected."""
        tasks = [asyncio.ensure_future(self.read(stream, args)) for stream, args in calls]
        if not blocking or len(tasks) == 1:
            return list(await asyncio.gather(*tasks))
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.result() for t in done):
                    break
            for stream, _args in calls:
                task = tasks[[s for s, _ in calls].index(stream)]
                if task.done() or stream not in self._conns:
                    continue
                _conn, client_id, (host, port) = self._conns[stream]
                try:
                    node = self._cluster.get_node(host=host, port=port)
                    await self._cluster.execute_command("CLIENT", "UNBLOCK", client_id, target_nodes=node)
                except (redis.RedisError, OSError):
                    pass  # that read ends at its BLOCK timeout instead
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            raise

    async def unblock_all(self) -> None:
        """End every blocked read now (each returns what it has, or nothing): the streams to read
        changed (a queue got its first priority level)."""
        for _conn, client_id, (host, port) in list(self._conns.values()):
            try:
                node = self._cluster.get_node(host=host, port=port)
                await self._cluster.execute_command("CLIENT", "UNBLOCK", client_id, target_nodes=node)
            except (redis.RedisError, OSError):
                pass  # that read ends at its BLOCK timeout instead

    async def close(self) -> None:
        for stream in list(self._conns):
            await self._drop(stream)

    @property
    def connections(self) -> int:
        return len(self._conns)
