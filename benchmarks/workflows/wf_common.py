"""Shared by wf_celeriac.py and wf_celery.py (standard library only: runs under either interpreter).

In the worker: ``member_done`` counts finished chord members in the process (and notes the time the
last one finished), ``body_started`` writes how long after that the body started, ``hop`` notes
when each step of a chain starts. In the driver's subprocess: ``main`` runs one phase and prints one
JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from harness import Resp  # noqa: E402

_members = [0, 0.0]
_hops: list[float] = []


def url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def _out(name: str) -> Path:
    return Path(os.environ["BENCH_OUT_DIR"]) / name


def member_done() -> None:
    _members[0] += 1
    _members[1] = time.time()
    if _members[0] == int(os.environ.get("BENCH_MEMBERS", "0")):
        _out("members.json").write_text(json.dumps({"t": _members[1]}))


def body_started(n: int) -> None:
    _out("body.json").write_text(json.dumps({"lag_s": time.time() - _members[1], "n": n}))


def hop() -> None:
    _hops.append(time.perf_counter())
    if len(_hops) == int(os.environ.get("BENCH_HOPS", "0")):
        _out("hops.json").write_text(json.dumps({"t": _hops}))


def _wait(path: Path, cap_s: float) -> bool:
    deadline = time.monotonic() + cap_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    time.sleep(0.01)
    return True


def _calls(r: Resp) -> dict[str, int]:
    return {k: v for k, v in r.commandstats().items() if not k.startswith(("info", "config", "flushall"))}


def _diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}


def _worker(module: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", module.__name__, "worker"],
        cwd=str(Path(__file__).parent),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(float(os.environ.get("BENCH_WORKER_START_S", "4")))  # started and idle
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def _run_counted(module: Any, r: Resp, send: Any, n: int, done: str, cap_s: float) -> dict[str, Any]:
    """Start a worker, send, wait for ``done``; Redis commands from the send to ``done``."""
    out_dir = Path(os.environ["BENCH_OUT_DIR"])
    for f in out_dir.glob("*.json"):
        f.unlink()
    r.cmd("FLUSHALL")
    proc = _worker(module, {"BENCH_MEMBERS": str(n)})
    try:
        before = _calls(r)
        t0 = time.perf_counter()
        send(n)
        ok = _wait(out_dir / done, cap_s)
        elapsed = time.perf_counter() - t0
        after = _calls(r)
    finally:
        _stop(proc)
    diff = _diff(before, after)
    result: dict[str, Any] = {
        "ok": ok,
        "seconds": elapsed,
        "commands": sum(diff.values()),
        "by_command": diff,
    }
    if ok and done == "body.json":
        result.update(json.loads((out_dir / done).read_text()))
    return result


def main(module: Any) -> None:
    phase = sys.argv[1]
    if phase == "worker":
        module.worker()
        return
    n = int(sys.argv[2])
    cap_s = float(os.environ.get("BENCH_CAP_S", "600"))
    r = Resp(url())
    out: dict[str, Any] = {"phase": phase, "n": n}
    if phase == "group":
        r.cmd("FLUSHALL")
        module.send_group(100)  # connection set-up, first-call costs
        r.cmd("FLUSHALL")
        seconds = module.send_group(n)
        out.update(seconds=seconds, rate=n / seconds)
    elif phase == "memory":
        r.cmd("FLUSHALL")
        module.send_plain(1)
        r.cmd("FLUSHALL")
        before = r.used_memory()
        module.send_chord(n)
        chord_bytes = r.used_memory() - before
        r.cmd("FLUSHALL")
        module.send_plain(1)
        r.cmd("FLUSHALL")
        before = r.used_memory()
        module.send_plain(n)
        plain_bytes = r.used_memory() - before
        out.update(chord_per_member=chord_bytes / n, plain_per_member=plain_bytes / n)
    elif phase == "chord":
        chord_run = _run_counted(module, r, module.send_chord, n, "body.json", cap_s)
        plain_run = _run_counted(module, r, module.send_plain, n, "members.json", cap_s)
        out.update(chord=chord_run, plain=plain_run)
        if chord_run["ok"] and plain_run["ok"]:
            out["extra_commands_per_member"] = (chord_run["commands"] - plain_run["commands"]) / n
    elif phase == "chain":
        out_dir = Path(os.environ["BENCH_OUT_DIR"])
        for f in out_dir.glob("*.json"):
            f.unlink()
        r.cmd("FLUSHALL")
        proc = _worker(module, {"BENCH_HOPS": str(n)})
        try:
            module.send_chain(n)
            ok = _wait(out_dir / "hops.json", cap_s)
        finally:
            _stop(proc)
        if ok:
            t = json.loads((out_dir / "hops.json").read_text())["t"]
            gaps = [(b - a) * 1000 for a, b in zip(t, t[1:])]
            out.update(
                ok=True, hop_p50_ms=statistics.median(gaps), hop_p90_ms=sorted(gaps)[int(0.9 * len(gaps))]
            )
        else:
            out.update(ok=False)
    print(json.dumps(out))
