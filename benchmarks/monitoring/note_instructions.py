"""The recorder's own work per recorded task, in instructions (callgrind): deterministic, unlike a drain.

A worker records a plain success with ``Recorder.note``, packs each few hundred (``Recorder._seal``,
from ``kick``) and builds and packs a write every ~100 ms (``Recorder._calls_of``, then redis-py's
Python serializer, as ``Recorder._run_unpacked`` sends it). This script does the same to 500
prepared (delivery, outcome, message) triples noted over and over (sealed every 500, a write of
6,500 built and packed, nothing sent), under ``valgrind --tool=callgrind`` at N and 2N notes, and
prints the slope: instructions per noted success. ``--mode`` stops earlier: ``call`` (the loop and
the call of an empty function: the floor every mode includes), ``note``, ``seal``, ``write`` (all).

    .venv/bin/python benchmarks/monitoring/note_instructions.py                  # every mode
    CELERIAC_SRC=/tmp/base/src .venv/bin/python benchmarks/monitoring/note_instructions.py --mode write

The figure moves by about 150 instructions between runs (allocator and dict states); compare
versions with the same command one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# CELERIAC_SRC: another checkout's src (git archive REF src | tar -x -C /tmp/ref) to compare with
sys.path.insert(0, os.environ.get("CELERIAC_SRC", str(HERE.parents[2] / "src")))
sys.path.insert(1, str(HERE.parents[1]))  # benchmarks/, for _callgrind

from _callgrind import collected  # noqa: E402

MODES = ("call", "note", "seal", "write")
BATCH = 500  # notes per seal (the recorder's _SEAL_AT)
WRITE_EVERY = 13  # seals per write: 6,500 records, about what a write carries at 65,000 tasks/s


def child(mode: str, n: int) -> None:
    from redis.connection import PythonRespSerializer

    import celeriac.monitor.recorder as recorder_module
    from celeriac.broker.base import Delivery
    from celeriac.execution import Outcome
    from celeriac.message import Message
    from celeriac.states import TaskState

    now_ms = int(time.time() * 1000)
    triples = []
    for i in range(BATCH):
        tid = str(uuid.uuid4())
        o = Outcome("ack", tid, "tasks.add", TaskState.SUCCESS, runtime_s=0.00001 * (i % 7 + 1))
        triples.append((Delivery("default", f"{now_ms}-{i}", b"m"), o, Message(tid, "tasks.add")))
    rec = recorder_module.Recorder(None, "celeriac", "w1", recorder_module.MonitorSettings())  # type: ignore[arg-type]
    packer = PythonRespSerializer(6000, lambda x: x if isinstance(x, bytes) else str(x).encode())
    note: Any = rec.note
    if mode == "call":

        def note(d: Any, o: Any, m: Any) -> None:
            pass

    done = seals = 0
    while done < n:
        for d, o, m in triples:
            note(d, o, m)
        done += BATCH
        if mode in ("call", "note"):  # drop what was noted, unpacked
            rec._flat, rec._runs, rec._pending = [], {}, []
            continue
        rec._seal()
        seals += 1
        if mode == "seal":
            rec._sealed = []
        elif seals % WRITE_EVERY == 0 or done >= n:
            batch, rec._sealed = rec._sealed, []
            for _segs, keys, args in rec._calls_of(batch):
                packer.pack("EVALSHA", "0" * 40, len(keys), *keys, *args)


def count(mode: str, n: int) -> int:
    return collected([sys.executable, __file__, "--child", mode, str(n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=26_000, help="notes in the smaller run (default 26,000)")
    ap.add_argument("--mode", choices=[*MODES, "all"], default="all")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    for mode in MODES if args.mode == "all" else (args.mode,):
        small, large = count(mode, args.n), count(mode, 2 * args.n)
        print(f"{mode:>5}: {(large - small) / args.n:,.0f} instructions per noted success", flush=True)


if __name__ == "__main__":
    main()
