"""A worker's id: Celery's ``%h``-style expansion, and one live worker per id.

The id names the worker's consumer in every queue's consumer group, so two live workers with one id
would share one consumer: each would see the other's deliveries as its own, renew or settle them, and
when one stops, the other's leases look lost and tasks run twice. So a worker refuses to start with
an id that a live worker holds, and says how to pick another.

Telling live from dead: a worker's registration (its heartbeat hash, ``celeriac status``) is
rewritten every ``worker_ttl_s / 3`` with a new ``beat_at`` and expires ``worker_ttl_s`` after the
last heartbeat. A worker killed with ``kill -9`` leaves it behind for up to ``worker_ttl_s``. At start:

* no registration: start;
* a registration by a process on this host that no longer exists (or by this very process: a
  worker re-executing itself): dead for sure, start at once;
* otherwise watch it for up to ``worker_ttl_s`` (plus a margin): a new heartbeat means the holder is
  alive, so refuse; expiry means it is dead, so start (a restart on another host, or in a new container
  with the same host name and another pid, waits at most that long).

Two workers started with one id within the same moment are not told apart (both see no registration);
the check is for the common mistakes (a copy-pasted ``-n``, a second ``systemctl start``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from ..broker.base import Broker, WorkerInfo

logger = logging.getLogger(__name__)

#: the heartbeat field that changes with every heartbeat (see :func:`heartbeat_stamp`)
BEAT_FIELD = "beat_at"

_FORMAT = re.compile(r"%(.)", re.DOTALL)
_POLL_S = 0.25
_MARGIN_S = 1.0


def expand_worker_id(template: str, hostname: str | None = None) -> str:
    """Expand Celery's abbreviations in a worker id (``-n worker1@%h``).

    ``%h``: the host name (with its domain), ``%n``: the host name without its domain, ``%d``: the
    domain, ``%i``: the pool process index, ``0`` for the main process, ``%I``: the same with a ``-``
    separator, empty for the main process (a worker id names the main process, so these are always
    ``0`` and empty, as in Celery), ``%%``: a ``%``.

    Raises:
        ConfigurationError: an unknown ``%`` abbreviation (Celery refuses them too).
    """
    host = hostname or socket.gethostname()
    name, _, domain = host.partition(".")
    keys = {"h": host, "n": name, "d": domain, "i": "0", "I": "", "%": "%"}

    def resolve(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in keys:
            raise ConfigurationError(
                "worker_id",
                f"unknown abbreviation %{key} in {template!r}: use %h (host name), %n (host name "
                "without domain), %d (domain), %i, %I (process index) or %% (a percent sign)",
            )
        return keys[key]

    expanded = _FORMAT.sub(resolve, template)
    if template.endswith("%") and not template.endswith("%%"):
        raise ConfigurationError(
            "worker_id", f"a lone % at the end of {template!r} (write %% for a percent sign)"
        )
    if not expanded.strip():
        raise ConfigurationError("worker_id", f"{template!r} expands to an empty worker id")
    return expanded


def heartbeat_stamp() -> str:
    """The value of :data:`BEAT_FIELD` for one heartbeat: different at every heartbeat."""
    return f"{time.time():.6f}"


async def claim_worker_id(broker: Broker, worker_id: str, ttl_s: float) -> None:
    """Return once no live worker holds ``worker_id`` (see the module docstring); else close
    ``broker`` and raise.

    Raises:
        ConfigurationError: a live worker holds the id (the message names it and how to pick another).
    """
    first = await _registration(broker, worker_id)
    if first is None:
        return
    if _dead_for_sure(first):
        logger.info(
            "worker id %s: its previous holder (pid %s) is gone; taking it over",
            worker_id,
            first.fields.get("pid", "?"),
        )
        return
    logger.info(
        "worker id %s is registered by pid %s on %s: waiting up to %.0fs to tell whether it is alive",
        worker_id,
        first.fields.get("pid", "?"),
        first.fields.get("hostname", "?"),
        ttl_s + _MARGIN_S,
    )
    deadline = time.monotonic() + ttl_s + _MARGIN_S
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        current = await _registration(broker, worker_id)
        if current is None or _dead_for_sure(current):
            logger.info("worker id %s: its previous holder died (registration expired); starting", worker_id)
            return
        if current.fields.get(BEAT_FIELD) != first.fields.get(BEAT_FIELD):
            first = current  # a new heartbeat: the holder is alive
            break
    await broker.close()
    raise ConfigurationError("worker_id", in_use_message(worker_id, first))


def in_use_message(worker_id: str, holder: WorkerInfo) -> str:
    """Why a worker does not start: who holds its id, and how to pick another."""
    f = holder.fields
    try:
        age = f", up {time.time() - float(f.get('started_at', '')):.0f}s"
    except ValueError:
        age = ""
    return (
        f"worker id {worker_id!r} is in use by a live worker (pid {f.get('pid', '?')} on "
        f"{f.get('hostname', '?')}{age}, consuming {f.get('queues', '?')}): two workers with one id would "
        "share one consumer and run tasks twice. Give this worker another id, e.g. -n worker2@%h "
        "(or leave -n out for a unique default); a worker that died frees its id within worker_ttl_s"
    )


async def _registration(broker: Broker, worker_id: str) -> WorkerInfo | None:
    infos = await asyncio.to_thread(broker.workers)
    return next((w for w in infos if w.worker_id == worker_id), None)


def _dead_for_sure(info: WorkerInfo) -> bool:
    """The holder ran on this host as a process that no longer exists, or as this very process."""
    if info.fields.get("hostname") != socket.gethostname():
        return False
    try:
        pid = int(info.fields.get("pid", ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return True  # this process's earlier life (a worker re-executing itself keeps its pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


__all__ = ["BEAT_FIELD", "claim_worker_id", "expand_worker_id", "heartbeat_stamp", "in_use_message"]
