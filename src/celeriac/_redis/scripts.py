"""Loads the Lua scripts in ``lua/`` (one operation per file) and calls them by SHA.

Why not redis-py's ``Script`` objects: inside a pipeline they send ``SCRIPT EXISTS`` before every
execution, which doubles the commands of the worker's hottest path. Here a call is one ``EVALSHA``;
when Redis answers ``NOSCRIPT`` (after a restart or failover flushed its script cache) the script is
loaded and that one call repeated. In a pipeline only the failed script calls are repeated, so no
other command of the pipeline runs twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from ..exceptions import BrokerError


def source(name: str, package: str = "celeriac._redis") -> str:
    """The Lua source of one script (``lua/<name>.lua`` in ``package``)."""
    return resources.files(package).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Script:
    """One Lua script, called by SHA with a load-and-retry on NOSCRIPT.

    Only the SHA stays in memory: :attr:`text` reads the ``.lua`` file again when Redis needs the
    source (NOSCRIPT: its script cache was flushed by a restart or a failover; a cluster node met for
    the first time), which is rare, while every process would otherwise hold the source of every
    script it loaded, used or not (tens of KiB: benchmarks/README.md).
    """

    name: str
    sha: str
    #: the package whose ``lua/`` directory holds ``<name>.lua``
    package: str = "celeriac._redis"

    @classmethod
    def named(cls, name: str, package: str = "celeriac._redis") -> Script:
        return cls(name, hashlib.sha1(source(name, package).encode()).hexdigest(), package)

    @property
    def text(self) -> str:
        """The Lua source, read from its file.

        Raises:
            BrokerError: the file no longer has this script's SHA (celeriac was upgraded under the
                running process): loading it would not define the script that is called.
        """
        text = source(self.name, self.package)
        if hashlib.sha1(text.encode()).hexdigest() != self.sha:
            raise BrokerError(
                f"{self.name}.lua changed on disk since this process started (celeriac was upgraded "
                "under it) and Redis needs it loaded again: restart the process"
            )
        return text

    def __call__(self, client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run on a synchronous client."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.text)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    async def run(self, client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run on an asyncio client."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.text)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


@dataclass
class Batch:
    """Script calls queued on a pipeline, so that NOSCRIPT replies can be repaired one by one."""

    calls: dict[int, tuple[Script, tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=dict)
    size: int = 0

    def add(self, pipe: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self.calls[self.size] = (script, tuple(keys), tuple(args))
        # execute_command, not pipe.evalsha: a Redis Cluster pipeline refuses the method (not the command)
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        self.size += 1

    def repair(self, client: Any, replies: list[Any]) -> list[Any]:
        """Re-run (sync) the script calls that failed with NOSCRIPT; raise any other error."""
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError) and i in self.calls:
                script, keys, args = self.calls[i]
                replies[i] = script(client, keys, args)
            elif isinstance(reply, Exception):
                raise reply
        return replies

    async def arepair(self, client: Any, replies: list[Any]) -> list[Any]:
        """Re-run (asyncio) the script calls that failed with NOSCRIPT; raise any other error."""
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError) and i in self.calls:
                script, keys, args = self.calls[i]
                replies[i] = await script.run(client, keys, args)
            elif isinstance(reply, Exception):
                raise reply
        return replies


ENQUEUE_DELAYED = Script.named("enqueue_delayed")
ENQUEUE_MANY = Script.named("enqueue_many")
PROMOTE = Script.named("promote")
SETTLE = Script.named("settle")
EXTEND = Script.named("extend")
RECLAIM = Script.named("reclaim")
RELEASE = Script.named("release")
REPLAY_DEAD = Script.named("replay_dead")
PURGE_READY = Script.named("purge_ready")
STORE_RESULT = Script.named("store_result")
PRUNE_CONSUMERS = Script.named("prune_consumers")
REVOKE = Script.named("revoke")
CONTROL = Script.named("control")
MARK_REVOKED = Script.named("mark_revoked")
ENQUEUE_ONE = Script.named("enqueue_one")
UNIQUE_RELEASE = Script.named("unique_release")
FETCH_LEVELS = Script.named("fetch_levels")
STORE_PROGRESS = Script.named("store_progress")
DISPATCH = Script.named("dispatch")
CHORD_INIT = Script.named("chord_init")
CHORD_PART = Script.named("chord_part")
