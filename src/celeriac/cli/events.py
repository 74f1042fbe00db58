"""``celeriac events``: stream task outcomes as workers record them (like ``celery events`` / a tail).

One line per outcome, flushed at once (so ``| grep``, ``| jq`` and ``| head`` work): human-readable by
default, one JSON object per line with ``--json``. Reads the recent-outcome logs that workers write
(``MonitorReader.follow``: a blocking XREAD); nothing is written and workers do no extra work for it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..monitor.record import STATES, TaskRecord
from ._common import get_state, split_names
from ._options import app_options

_RELIST_S = 5.0


def format_line(r: TaskRecord) -> str:
    """``time STATE name[id] queue=... worker=... runtime ... detail`` (one line, no newline)."""
    finished = r.finished_ms / 1000 if r.finished_ms else time.time()
    stamp = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(finished)) + f".{int(finished * 1000) % 1000:03d}"
    )
    parts = [stamp, f"{r.state:<8}", f"{r.name}[{r.task_id}]", f"queue={r.queue}", f"worker={r.worker}"]
    if r.state in ("SUCCESS", "FAILURE", "RETRY", "DEAD"):
        parts.append(f"runtime={r.runtime_s:.6f}s")
    if r.retries:
        parts.append(f"retries={r.retries}")
    exc, msg, reason = r.details.get("exc"), r.details.get("msg"), r.details.get("reason")
    detail = reason or (f"{exc}: {msg}" if exc else "")
    if detail:
        parts.append(detail.replace("\n", " "))
    return "  ".join(parts)


def as_json(r: TaskRecord) -> dict[str, Any]:
    """The JSON line of an outcome: the dashboard API's record fields, without the traceback."""
    out = r.as_json()
    out.pop("cursor", None)
    out.pop("traceback", None)
    return out


@click.command()
@app_options
@click.option(
    "-Q",
    "--queues",
    "queues_arg",
    metavar="Q1,Q2",
    multiple=True,
    show_envvar=True,
    help="Follow these queues (default: every queue workers consumed, re-listed as new ones appear).",
)
@click.option(
    "--json", "as_json_lines", is_flag=True, help="One JSON object per line (fields as /api/tasks/<id>)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES, case_sensitive=False),
    help="Only outcomes in this state (repeat for several).",
)
@click.option("--name", "names", multiple=True, help="Only tasks of this name (repeat for several).")
@click.option(
    "--since",
    "since_s",
    type=click.FloatRange(min=0),
    default=None,
    help="First show the outcomes recorded in the last SECONDS, then follow.",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after printing this many outcomes (default: follow until interrupted).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Exit (status 0) after this many seconds.",
)
@click.pass_context
def events(
    ctx: click.Context,
    queues_arg: tuple[str, ...],
    as_json_lines: bool,
    states: tuple[str, ...],
    names: tuple[str, ...],
    since_s: float | None,
    count: int | None,
    timeout_s: float | None,
) -> None:
    """Stream task outcomes (succeeded, failed, retried, dead-lettered, revoked, expired) as they happen.

    \b
    celeriac events -A shop.tasks:app
    celeriac events --json --state FAILURE | jq .exception_type
    celeriac events --since 600 -n 20
    """
    from redis.cluster import RedisCluster

    from .._redis.client import sync_client
    from ..monitor.reader import MonitorReader

    app = get_state(ctx).app()
    broker = app.broker
    named = split_names(queues_arg)
    client = sync_client(app.conf.broker_url, max_connections=2)
    client.client_setname("celeriac-events")  # who is tailing, in CLIENT LIST
    reader = MonitorReader(client, app.conf.key_prefix)
    # Redis Cluster: keys of several slots cannot share one XREAD, so each queue is read in turn
    cluster = isinstance(client, RedisCluster)
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    wanted_states = {s.upper() for s in states}
    wanted_names = set(names)
    start = f"{int((time.time() - since_s) * 1000)}-0" if since_s is not None else None
    positions: dict[str, str] = {}  # queue -> last log entry read
    queues: list[str] = []
    listed_at = float("-inf")
    shown = 0
    out = sys.stdout
    try:
        while deadline is None or time.monotonic() < deadline:
            if time.monotonic() - listed_at >= _RELIST_S:  # a queue that appears later is followed too
                listed_at = time.monotonic()
                queues = named or broker.known_queues()
                for q in queues:
                    if q not in positions and start is not None:
                        positions[q] = start  # --since: from then on; else follow() starts from now
            if not queues:
                time.sleep(0.5)
                continue
            batch = []
            for group in ([q] for q in queues) if cluster else [queues]:
                records, moved = reader.follow(group, positions, block_ms=max(1, 500 // len(queues)))
                positions.update(moved)
                batch += records
            lines = []
            for record in batch:
                if wanted_states and record.state not in wanted_states:
                    continue
                if wanted_names and record.name not in wanted_names:
                    continue
                lines.append(
                    json.dumps(as_json(record), ensure_ascii=False) if as_json_lines else format_line(record)
                )
                if count is not None and shown + len(lines) >= count:
                    break
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()  # once per read: each line is out before the next wait
                shown += len(lines)
            if count is not None and shown >= count:
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head`: the reader left; not an error
        sys.stderr.close()
    finally:
        client.close()


__all__ = ["as_json", "events", "format_line"]
