"""Processes below a process, read from ``/proc`` (Linux): what a worker started (fork server,
children), for tests that kill a worker and check its children died, and for memory figures."""

from __future__ import annotations

import os

__all__ = ["descendant_pids"]


def descendant_pids(pid: int) -> list[int]:
    """The pids of every process below ``pid`` (children, their children...), parents first.

    Empty where ``/proc`` is not available. A snapshot: processes may start or end meanwhile.
    """
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # the command name may hold spaces and parentheses: the fields follow the last ")"
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out
