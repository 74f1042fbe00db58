"""Workflow soak: many chords and chains while worker processes are killed with SIGKILL at random.

Every chord body and every chain end must run with the right value; a body (or chain end) may run
twice only if a worker that ran it was killed (it ran, and its worker died before the ack).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac, Signature, chain, chord
from celeriac.testing import RedisServer

from .conftest import CliWorker
from .marks import mark_worker_starter

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHORDS = 150
MEMBERS = 40
CHAINS = 150
STEPS = 10
WORKERS = 3
LEASE_S = 2.0
SEED = 20_261_203


def _records(directory: Path) -> dict[str, list[tuple[int, str, int]]]:
    """``{"body": [(c, value, pid)], "end": [...]}`` from every worker's mark file (whole lines)."""
    out: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for path in directory.glob("marks-*"):
        data = path.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].decode().splitlines():
            kind, c, value, pid = line.split(" ")
            out[kind].append((int(c), value, int(pid)))
    return out


def test_workflow_soak_with_workers_killed_at_random(tmp_path: Path, reliability: Any) -> None:
    rng = random.Random(SEED)
    with RedisServer() as server:
        app = Celeriac("producer", broker=server.url)
        start = mark_worker_starter(
            server.url, tmp_path, CELERIAC_LEASE_S=str(LEASE_S), CELERIAC_MAX_DELIVERIES="100"
        )
        generation = 0

        def spawn() -> tuple[str, CliWorker]:
            nonlocal generation
            generation += 1
            name = f"wf-soak-{generation}"
            return name, start(name, "-P", "asyncio", "-c", "20")

        live = dict(spawn() for _ in range(WORKERS))
        for c in range(CHORDS):
            header = [
                Signature("itest.wf_member", (c, i, rng.uniform(0.02, 0.25)), app=app) for i in range(MEMBERS)
            ]
            chord(header, Signature("itest.wf_body", (c,), app=app)).delay()
        for c in range(CHAINS):
            steps = [Signature("itest.wf_step", (0, rng.uniform(0.02, 0.1)), app=app)]
            steps += [
                Signature("itest.wf_step", (rng.uniform(0.02, 0.1),), app=app) for _ in range(STEPS - 1)
            ]
            chain(*steps, Signature("itest.wf_end", (c,), app=app)).delay()

        done = threading.Event()
        killed: list[int] = []
        errors: list[BaseException] = []

        def finished() -> bool:
            recs = _records(tmp_path)
            return (
                len({c for c, _, _ in recs["body"]}) == CHORDS
                and len({c for c, _, _ in recs["end"]}) == CHAINS
            )

        def killer() -> None:
            try:
                while not done.wait(rng.uniform(0.5, 1.5)):
                    name = rng.choice(sorted(live))
                    victim = live.pop(name)
                    killed.append(victim.proc.pid)
                    victim.proc.kill()
                    victim.proc.wait()
                    victim.close()
                    new_name, replacement = spawn()
                    live[new_name] = replacement
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=killer, name="wf-soak-killer", daemon=True)
        began = time.monotonic()
        thread.start()
        try:
            deadline = time.monotonic() + 180
            while not finished() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            done.set()
            thread.join(60)
        elapsed = time.monotonic() - began
        assert not errors, errors
        time.sleep(LEASE_S * 2)  # late duplicates, if any, show up too
        recs = _records(tmp_path)
        bodies: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for c, value, pid in recs["body"]:
            bodies[c].append((value, pid))
        ends: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for c, value, pid in recs["end"]:
            ends[c].append((value, pid))
        expected_values = ",".join(str(i) for i in range(MEMBERS))
        assert sorted(bodies) == list(range(CHORDS)), "a chord body never ran"
        assert sorted(ends) == list(range(CHAINS)), "a chain end never ran"
        for c, seen in bodies.items():
            assert all(value == expected_values for value, _ in seen), (c, seen)
            if len(seen) > 1:  # a duplicate is explained by a killed worker that ran it
                assert any(pid in killed for _, pid in seen), (c, seen)
        for c, seen in ends.items():
            assert all(value == str(STEPS) for value, _ in seen), (c, seen)
            if len(seen) > 1:
                assert any(pid in killed for _, pid in seen), (c, seen)
        member_runs = Counter((c, value) for c, value, _ in recs["member"])
        rerun = sum(n - 1 for n in member_runs.values())
        assert len(member_runs) == CHORDS * MEMBERS
        body_dups = sum(len(s) - 1 for s in bodies.values())
        end_dups = sum(len(s) - 1 for s in ends.values())
        leftover = list(app.broker.sync.scan_iter("*:chord:*"))  # type: ignore[attr-defined]
        summary = (
            f"{CHORDS} chords of {MEMBERS} and {CHAINS} chains of {STEPS + 1} steps, {len(killed)} SIGKILLs "
            f"in {elapsed:.1f} s; {rerun} member runs repeated after a kill (each counted once): every "
            f"body and chain end ran with the right value; duplicates: "
            f"{body_dups} bodies, {end_dups} chain ends (each run by a worker that was killed); "
            f"{len(leftover)} chord states left"
        )
        print(summary)
        assert len(killed) >= 3, summary
        assert leftover == [], summary
        for w in live.values():
            w.stop()
        app.close()
    reliability.record(
        f"Workflow soak: {CHORDS} chords of {MEMBERS} members and {CHAINS} chains of {STEPS + 1} steps on "
        f"{WORKERS} asyncio worker processes, one killed with SIGKILL every 0.5-1.5 s and replaced "
        f"(lease {LEASE_S:g} s)",
        "every chord body and chain end ran with the right value; a body or chain end ran twice only in a "
        "worker that was killed; no chord state left in Redis",
        summary,
    )
