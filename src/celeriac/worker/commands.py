"""Commands for live workers (``celeriac control shutdown``, the refresh behind ``celeriac inspect``).

They travel in the revocation stream that every worker already follows (``control.lua``); the broker
collects those written after the worker started, and the worker applies them here, from its control
loop or right after a fetch that read them:

* ``shutdown``: a warm shutdown, exactly as after SIGTERM (stop fetching, let running tasks finish
  within ``worker_shutdown_grace_s``, record their outcomes; the process exits 0);
* ``heartbeat``: publish the heartbeat now, so that ``celeriac inspect`` reads fresh state.

A command names its destination workers, or none for all; an unknown command is logged and skipped
(a newer client talking to an older worker).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..exceptions import BrokerError

if TYPE_CHECKING:
    from ..broker.revoked import ControlCommand
    from .worker import Worker

logger = logging.getLogger("celeriac.worker")

_beats: set[asyncio.Task[None]] = set()


def apply_commands(w: Worker, commands: list[ControlCommand]) -> None:
    """Apply the commands meant for ``w`` (called on its loop)."""
    beat = False
    for command in commands:
        if not command.for_worker(w.worker_id):
            continue
        if command.command == "shutdown":
            if not w.stopping:
                logger.warning("shutdown requested (celeriac control shutdown): warm shutdown")
                w.stop()
        elif command.command == "heartbeat":
            beat = True
        else:
            logger.warning("unknown control command %r ignored (a newer celeriac sent it?)", command.command)
    if beat and not w.stopping:
        task = asyncio.ensure_future(_heartbeat(w))
        _beats.add(task)
        task.add_done_callback(_beats.discard)


async def _heartbeat(w: Worker) -> None:
    try:
        await w.maintenance.publish_heartbeat()
    except BrokerError as exc:
        logger.debug("heartbeat asked by inspect failed (%s); the heartbeat loop retries", exc)


__all__ = ["apply_commands"]
