"""Shared by wf_celeriac.py and wf_celery.py (standard library only: runs under either interpreter).

In the worker: ``member_done`` counts finished chord members in the process (and notes the time the
last one finished), ``body_started`` writes how long after that the body started, ``hop`` notes
when each step of a chain starts. In the driver's subprocess: ``main`` runs one phase and prints one
JSON object.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from harness import Resp

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


class Monitor:
    """Counts the commands Redis runs, by origin, with MONITOR: sent by a client, or run inside a Lua
    script (MONITOR tags those ``[db lua]``). MONITOR costs Redis time, so the counted runs are slower;
    their duration is not what they report."""

    def __init__(self, redis_url: str) -> None:
        host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"+OK")
        self.client = 0
        self.lua = 0
        self.by_command: dict[str, int] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.file:
            if self._stop:
                return
            head, _, rest = line.partition(b"] ")
            name = rest.split(b" ", 1)[0].strip(b'"').lower().decode(errors="replace")
            if name in ("info", "config", "flushall", "monitor"):
                continue
            if head.endswith(b" lua"):
                self.lua += 1
            else:
                self.client += 1
                self.by_command[name] = self.by_command.get(name, 0) + 1

    def stop(self) -> dict[str, Any]:
        time.sleep(0.2)  # let the last lines arrive
        self._stop = True
        self.sock.close()
        return {"client": self.client, "in_scripts": self.lua, "client_by_command": self.by_command}


def _worker(module: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", module.__spec__.name, "worker"],
        cwd=str(Path(__file__).parent),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=open(Path(os.environ["BENCH_OUT_DIR"]) / "worker.log", "ab"),  # noqa: SIM115
    )
    time.sleep(float(os.environ.get("BENCH_WORKER_START_S", "4")))  # started and idle
    return proc


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def _run_counted(
    module: Any, r: Resp, send: Any, n: int, done: str, cap_s: float, monitor: bool = False
) -> dict[str, Any]:
    """Start a worker, send, wait for ``done``; Redis commands from the send to ``done`` (with
    ``monitor``: split into those clients sent and those run inside scripts)."""
    out_dir = Path(os.environ["BENCH_OUT_DIR"])
    for f in out_dir.glob("*.json"):
        f.unlink()
    r.cmd("FLUSHALL")
    proc = _worker(module, {"BENCH_MEMBERS": str(n)})
    mon = Monitor(url()) if monitor else None
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
    if mon is not None:
        result["monitor"] = mon.stop()
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
        # timed run (body lag), then the same chord and N plain tasks counted with MONITOR
        chord_run = _run_counted(module, r, module.send_chord, n, "body.json", cap_s)
        counted = _run_counted(module, r, module.send_chord, n, "body.json", cap_s, monitor=True)
        plain_run = _run_counted(module, r, module.send_plain, n, "members.json", cap_s, monitor=True)
        out.update(chord=chord_run, chord_counted=counted, plain=plain_run)
        if counted["ok"] and plain_run["ok"]:
            c, p = counted["monitor"], plain_run["monitor"]
            out["extra_client_commands_per_member"] = (c["client"] - p["client"]) / n
            out["extra_commands_per_member"] = (
                c["client"] + c["in_scripts"] - p["client"] - p["in_scripts"]
            ) / n
    elif phase == "chain":
        out_dir = Path(os.environ["BENCH_OUT_DIR"])
        for f in out_dir.glob("*.json"):
            f.unlink()
        r.cmd("FLUSHALL")
        proc = _worker(module, {"BENCH_HOPS": str(n)})
        try:
            cpu_before = _cpu_s(proc.pid)
            module.send_chain(n)
            ok = _wait(out_dir / "hops.json", cap_s)
            cpu_after = _cpu_s(proc.pid)
        finally:
            _stop(proc)
        if ok:
            t = json.loads((out_dir / "hops.json").read_text())["t"]
            gaps = sorted((b - a) * 1000 for a, b in itertools.pairwise(t))
            out.update(
                ok=True,
                hop_p50_ms=statistics.median(gaps),
                hop_p90_ms=gaps[int(0.9 * len(gaps))],
                hop_p99_ms=gaps[int(0.99 * len(gaps))],
            )
            if cpu_before is not None and cpu_after is not None:
                # the worker's CPU time (every thread of it, user and system) from the send until the
                # last step ran, per hop: less sensitive to other load on the machine than the times
                out["worker_cpu_ms_per_hop"] = (cpu_after - cpu_before) * 1000 / (n - 1)
        else:
            out.update(ok=False)
    print(json.dumps(out))
