"""The benchmark driver shared by every adapter (runs under any interpreter, standard library only).

``python -m harness run LIB WORKLOAD --mode quick --out FILE`` imports ``bench_<LIB>`` (an adapter:
the library's app, the tasks, and a few hooks), runs one workload against the private Redis named by
``BENCH_REDIS_URL`` and writes one JSON object to FILE. ``python -m harness worker LIB PROFILE`` runs a
worker for adapters that start their worker through a Python API rather than a CLI.

How things are measured (the same way for every library):

* enqueue rates are timed by the adapter around its send loop only (client set-up and a warm-up of
  a few sends are left out);
* a drain is timed *inside the worker*: every task calls :func:`probe_hit`, which counts calls in the
  process and, at call 1, every ``step`` calls and at call N, appends ``(count, time, INFO
  commandstats)`` to a file. Rate = tasks between the first and last record / time between them, so
  worker start-up is excluded; Redis commands per task come from the same two records (the probe's
  own ``INFO`` calls are left out);
* memory is ``used_memory`` after the fill minus before, divided by the tasks queued;
* worker memory is RSS / PSS summed over the worker's process tree (``/proc``).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from typing import Any
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))

#: sizes and caps per mode; every cap bounds a wait, so a stuck library cannot stall the run
PARAMS: dict[str, dict[str, Any]] = {
    "quick": dict(
        enqueue_n=10_000,
        bulk_n=20_000,
        drain_n=20_000,
        drain_cap_s=10.0,
        fill_cap_s=15.0,
        mem_n=100_000,
        mem_cap_s=10.0,
        rt_n=200,
        rt_cap_s=10.0,
        sleep_n=4_000,
        sleep_cap_s=15.0,
        kill_cap_s=60.0,
        kill_warm_s=6.0,
        depth_small=10_000,
        depth_big=None,
        depth_rounds=7,
    ),
    "full": dict(
        enqueue_n=50_000,
        bulk_n=200_000,
        drain_n=100_000,
        drain_cap_s=60.0,
        fill_cap_s=300.0,
        mem_n=1_000_000,
        mem_cap_s=300.0,
        rt_n=2_000,
        rt_cap_s=60.0,
        sleep_n=20_000,
        sleep_cap_s=60.0,
        kill_cap_s=360.0,
        kill_warm_s=8.0,
        depth_small=10_000,
        depth_big=1_000_000,
        depth_rounds=7,
    ),
}

START_TIMEOUT_S = 60.0  # a worker that has not run its first task by then failed to start


class Unsupported(Exception):
    """The library has no such feature (e.g. no bulk enqueue API); recorded, not an error."""


# ---------------------------------------------------------------------------------------------------
# a tiny RESP2 client (no dependency, so it runs in every venv; used by the driver and the probe)
# ---------------------------------------------------------------------------------------------------
class Resp:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        db = (parts.path or "/0").lstrip("/") or "0"
        if db != "0":
            self.cmd("SELECT", db)

    def cmd(self, *args: Any) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP reply {line!r}")

    def info(self, section: str) -> dict[str, str]:
        text = self.cmd("INFO", section).decode()
        out = {}
        for ln in text.splitlines():
            if ":" in ln and not ln.startswith("#"):
                k, v = ln.split(":", 1)
                out[k] = v
        return out

    def commandstats(self) -> dict[str, int]:
        out = {}
        for k, v in self.info("commandstats").items():
            # cmdstat_xadd:calls=3,usec=...
            calls = v.split(",", 1)[0].split("=", 1)[1]
            out[k[len("cmdstat_") :]] = int(calls)
        return out

    def used_memory(self) -> int:
        return int(self.info("memory")["used_memory"])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def redis_url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def flushall() -> None:
    r = Resp(redis_url())
    r.cmd("FLUSHALL")
    r.close()


# ---------------------------------------------------------------------------------------------------
# the probe: called by every benchmark task, inside the worker process
# ---------------------------------------------------------------------------------------------------
_probe_file = os.environ.get("BENCH_PROBE_FILE")
_probe_target = int(os.environ.get("BENCH_PROBE_N", "0") or 0)
_probe_step = int(os.environ.get("BENCH_PROBE_STEP", "0") or 0) or max(1, _probe_target // 40)
_probe_counter = itertools.count(1)
_probe_lock = threading.Lock()
_probe_redis: Resp | None = None


def probe_hit() -> None:
    """Count one task; every ``step`` tasks record (count, time, commandstats). Cheap otherwise."""
    if _probe_file is None:
        return
    c = next(_probe_counter)  # atomic under the GIL: safe from worker threads
    if c == 1 or c % _probe_step == 0 or c == _probe_target:
        _probe_record(c)


def _probe_record(c: int) -> None:
    global _probe_redis
    t = time.time()
    with _probe_lock:
        if _probe_redis is None:
            _probe_redis = Resp(redis_url())
        cs = _probe_redis.commandstats()
        with open(_probe_file, "a") as f:  # type: ignore[arg-type]
            f.write(json.dumps({"c": c, "t": t, "pid": os.getpid(), "cs": cs}) + "\n")


def probe_event(kind: str) -> None:
    """Record that something happened in this process (the kill test's "task started")."""
    path = os.environ.get("BENCH_EVENTS_FILE")
    if path:
        with _probe_lock, open(path, "a") as f:
            f.write(json.dumps({"event": kind, "pid": os.getpid(), "t": time.time()}) + "\n")


def results_on() -> bool:
    """Adapters configure their result backend only when this is set (round-trip workload)."""
    return os.environ.get("BENCH_RESULTS") == "1"


# ---------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------
def _ppid_map() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
                out[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree_pids(root: int) -> list[int]:
    ppid = _ppid_map()
    pids, frontier = [root], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in ppid.items() if pp == p]
        pids += kids
        frontier += kids
    return pids


def tree_memory(root: int) -> dict[str, Any]:
    """RSS and PSS (MiB) summed over a process tree."""
    rss = pss = 0
    pids = tree_pids(root)
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        rss += int(ln.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for ln in f:
                    if ln.startswith("Pss:"):
                        pss += int(ln.split()[1])
        except OSError:
            pass
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1), "processes": len(pids)}


class WorkerProc:
    """A worker started in its own session (so kill -9 reaches its whole process tree)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=HERE, start_new_session=True
        )
        self.pid = self.proc.pid
        pids_file = os.environ.get("BENCH_PIDS_FILE")
        if pids_file:  # so that the orchestrator can clean up after a driver it had to kill
            with open(pids_file, "a") as f:
                f.write(f"{self.pid}\n")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole tree (process group, then any straggler that left it)."""
        pids = tree_pids(self.pid) if self.alive() else []
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


# ---------------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------------
class Driver:
    def __init__(self, lib: str, mode: str, tmp: str) -> None:
        self.lib = lib
        self.mode = mode
        # BENCH_PARAMS='{"drain_n": 5000}' overrides sizes and caps (to try a workload quickly)
        self.p = {**PARAMS[mode], **json.loads(os.environ.get("BENCH_PARAMS") or "{}")}
        self.tmp = tmp
        self.adapter: Any = None
        self._n = 0

    def load(self) -> None:
        module = importlib.import_module(f"bench_{self.lib}")
        self.adapter = module.Adapter()

    def _path(self, stem: str) -> str:
        self._n += 1
        return os.path.join(self.tmp, f"{self.lib}-{stem}-{os.getpid()}-{self._n}")

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("BENCH_PROBE_FILE", "BENCH_PROBE_N", "BENCH_PROBE_STEP", "BENCH_EVENTS_FILE"):
            env.pop(k, None)
        env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def start_worker(self, profile: str, **env: str) -> WorkerProc:
        argv = self.adapter.worker_cmd(profile)
        env = {"BENCH_PROFILE": profile, **env}
        return WorkerProc(argv, self.worker_env(**env), self._path(f"worker-{profile}.log"))

    # ---- probe-timed drain ------------------------------------------------------------------------
    def timed_drain(self, profile: str, target: int, cap_s: float, step: int | None = None) -> dict[str, Any]:
        """Start a worker on an already filled queue and time it with the probe."""
        probe = self._path("probe.jsonl")
        open(probe, "w").close()
        step = step or max(1, target // 40)
        w = self.start_worker(
            profile, BENCH_PROBE_FILE=probe, BENCH_PROBE_N=str(target), BENCH_PROBE_STEP=str(step)
        )
        records: list[dict[str, Any]] = []
        started = time.monotonic()
        first_at: float | None = None
        try:
            while True:
                time.sleep(0.05)
                with open(probe) as f:
                    records = [json.loads(ln) for ln in f if ln.strip()]
                if records and first_at is None:
                    first_at = time.monotonic()
                if records and records[-1]["c"] >= target:
                    break
                if first_at is None and time.monotonic() - started > START_TIMEOUT_S:
                    raise RuntimeError(f"worker ran no task within {START_TIMEOUT_S:.0f}s\n{w.log_tail()}")
                if first_at is not None and time.monotonic() - first_at > cap_s:
                    break  # slow library: rate over what it did within the cap
                if not w.alive():
                    raise RuntimeError(f"worker exited (rc={w.proc.returncode})\n{w.log_tail()}")
        finally:
            w.kill()
        if len(records) < 2:
            raise RuntimeError(f"only {len(records)} probe record(s) within the cap")
        pids = {r["pid"] for r in records}
        if len(pids) > 1:
            raise RuntimeError(f"tasks ran in several processes {sorted(pids)}: the probe needs one")
        a, b = records[0], records[-1]
        tasks = b["c"] - a["c"]
        secs = b["t"] - a["t"]
        delta = {k: b["cs"].get(k, 0) - a["cs"].get(k, 0) for k in b["cs"]}
        delta.pop("info", None)  # the probe's own
        delta = {k: v for k, v in delta.items() if v > 0}
        total = sum(delta.values())
        top = dict(sorted(delta.items(), key=lambda kv: -kv[1])[:8])
        return {
            "rate": tasks / secs if secs > 0 else None,
            "tasks_timed": tasks,
            "seconds": secs,
            "completed": b["c"] >= target,
            "cmds_per_task": total / tasks if tasks else None,
            "cmds_top": {k: round(v / tasks, 3) for k, v in top.items()},
            "records": [(r["c"], r["t"]) for r in records],
        }

    # ---- workloads --------------------------------------------------------------------------------
    def w_enqueue_one(self) -> dict[str, Any]:
        n = self.p["enqueue_n"]
        done, secs = self.adapter.enqueue_one(n, None)
        return {"rate": done / secs, "n": done, "seconds": secs}

    def w_enqueue_bulk(self) -> dict[str, Any]:
        n = self.p["bulk_n"]
        secs = self.adapter.enqueue_bulk(n)
        return {"rate": n / secs, "n": n, "seconds": secs}

    def fill(self, n: int, task: str, cap_s: float) -> tuple[int, str]:
        """Queue ``n`` tasks the fastest way the library has (bulk when it has one)."""
        deadline = time.monotonic() + cap_s
        try:
            self.adapter.fill_bulk(n, task)
            return n, "bulk"
        except Unsupported:
            done, _ = self.adapter.enqueue_one(n, deadline, task=task)
            return done, "one at a time"

    def w_drain(self) -> dict[str, Any]:
        n, how = self.fill(self.p["drain_n"], "add", self.p["fill_cap_s"])
        out = self.timed_drain("drain", n, self.p["drain_cap_s"])
        out.update(queued=n, fill=how, worker=self.adapter.describe("drain"))
        return out

    def w_drain2(self) -> dict[str, Any]:
        """The same drain with two worker processes (two instances of the one-process worker)."""
        n, how = self.fill(self.p["drain_n"], "add", self.p["fill_cap_s"])
        probe = self._path("probe2.jsonl")
        open(probe, "w").close()
        step = max(1, n // 80)
        env = dict(BENCH_PROBE_FILE=probe, BENCH_PROBE_N=str(n), BENCH_PROBE_STEP=str(step))
        workers = [self.start_worker("drain", **env), self.start_worker("drain", **env)]
        started = time.monotonic()
        first_at: float | None = None
        by_pid: dict[int, list[tuple[int, float]]] = {}
        try:
            while True:
                time.sleep(0.05)
                by_pid = {}
                with open(probe) as f:
                    for ln in f:
                        if ln.strip():
                            r = json.loads(ln)
                            by_pid.setdefault(r["pid"], []).append((r["c"], r["t"]))
                done = sum(recs[-1][0] for recs in by_pid.values())
                if by_pid and first_at is None:
                    first_at = time.monotonic()
                # stop while both are still busy: the tail of a drain is one process finishing alone
                if done >= n - 4 * step:
                    break
                if first_at is None and time.monotonic() - started > START_TIMEOUT_S:
                    raise RuntimeError(f"workers ran no task within {START_TIMEOUT_S:.0f}s")
                if first_at is not None and time.monotonic() - first_at > self.p["drain_cap_s"]:
                    break
                dead = [w for w in workers if not w.alive()]
                if dead:
                    raise RuntimeError(f"a worker exited\n{dead[0].log_tail()}")
        finally:
            for w in workers:
                w.kill()
        if len(by_pid) < 2:
            raise RuntimeError(f"tasks ran in {len(by_pid)} process(es), expected 2")
        # both processes' windows: from the later first record to the earlier last record
        t0 = max(recs[0][1] for recs in by_pid.values())
        t1 = min(recs[-1][1] for recs in by_pid.values())
        if t1 <= t0:
            raise RuntimeError("the two workers did not run at the same time")

        def count_at(recs: list[tuple[int, float]], t: float) -> float:
            for (c0, s0), (c1, s1) in itertools.pairwise(recs):
                if s0 <= t <= s1:
                    return c0 + (c1 - c0) * ((t - s0) / (s1 - s0) if s1 > s0 else 1.0)
            return float(recs[-1][0] if t >= recs[-1][1] else recs[0][0])

        tasks = sum(count_at(recs, t1) - count_at(recs, t0) for recs in by_pid.values())
        return {
            "rate": tasks / (t1 - t0),
            "tasks_timed": round(tasks),
            "seconds": t1 - t0,
            "queued": n,
            "fill": how,
            "per_process": {str(p): recs[-1][0] for p, recs in by_pid.items()},
            "worker": "2 x " + self.adapter.describe("drain"),
        }

    def w_drain_sync(self) -> dict[str, Any]:
        """The drain with a plain ``def`` task, where the library runs sync and async tasks differently."""
        if "drain_sync" not in self.adapter.configs:
            raise Unsupported("same as drain")
        n, how = self.fill(self.p["drain_n"], "add_sync", self.p["fill_cap_s"])
        out = self.timed_drain("drain_sync", n, self.p["drain_cap_s"])
        out.update(queued=n, fill=how, worker=self.adapter.describe("drain_sync"))
        return out

    def w_memory(self) -> dict[str, Any]:
        r = Resp(redis_url())
        self.adapter.connect()
        before = r.used_memory()
        n, how = self.fill(self.p["mem_n"], "add", self.p["mem_cap_s"])
        time.sleep(0.2)
        after = r.used_memory()
        r.close()
        return {"bytes_per_task": (after - before) / n, "n": n, "fill": how, "delta": after - before}

    def w_roundtrip(self) -> dict[str, Any]:
        w = self.start_worker("results")
        try:
            # warm up: the first round trip also waits for the worker to start
            self.adapter.roundtrip(1, time.monotonic() + START_TIMEOUT_S, warm=True)
            self.adapter.roundtrip(20, time.monotonic() + 20, warm=True)
            lat = self.adapter.roundtrip(self.p["rt_n"], time.monotonic() + self.p["rt_cap_s"])
            if not w.alive():
                raise RuntimeError(f"worker exited\n{w.log_tail()}")
            time.sleep(2.0)  # idle
            mem = tree_memory(w.pid)
        finally:
            w.kill()
        lat_ms = sorted(x * 1000 for x in lat)
        q = statistics.quantiles(lat_ms, n=100, method="inclusive") if len(lat_ms) > 1 else lat_ms * 99
        return {
            "p50_ms": statistics.median(lat_ms),
            "p99_ms": q[98],
            "mean_ms": statistics.fmean(lat_ms),
            "n": len(lat_ms),
            "idle_rss_mib": mem["rss_mib"],
            "idle_pss_mib": mem["pss_mib"],
            "processes": mem["processes"],
            "worker": self.adapter.describe("results"),
        }

    def w_sleep_drain(self) -> dict[str, Any]:
        n, how = self.fill(self.p["sleep_n"], "sleep", self.p["fill_cap_s"])
        out = self.timed_drain("sleep", n, self.p["sleep_cap_s"])
        out.update(queued=n, fill=how, ideal_rate=100 / 0.05, worker=self.adapter.describe("sleep"))
        out.pop("cmds_top", None)
        return out

    def w_kill(self) -> dict[str, Any]:
        events = self._path("events.jsonl")
        open(events, "w").close()
        cap = self.p["kill_cap_s"]

        def read() -> list[dict[str, Any]]:
            with open(events) as f:
                return [json.loads(ln) for ln in f if ln.strip()]

        a = self.start_worker("kill", BENCH_EVENTS_FILE=events)
        b = None
        try:
            self.adapter.enqueue_slow()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not read():
                if time.monotonic() > deadline or not a.alive():
                    raise RuntimeError(f"the slow task did not start on worker A\n{a.log_tail()}")
                time.sleep(0.05)
            a_pids = set(tree_pids(a.pid))
            b = self.start_worker("kill", BENCH_EVENTS_FILE=events)
            time.sleep(self.p["kill_warm_s"])  # let worker B start and go idle
            if not b.alive():
                raise RuntimeError(f"worker B exited\n{b.log_tail()}")
            b_mem = tree_memory(b.pid)
            t_kill = time.time()
            a.kill()
            while time.time() - t_kill < cap:
                again = [e for e in read()[1:] if e["pid"] not in a_pids]
                if again:
                    return {
                        "rerun_s": again[0]["t"] - t_kill,
                        "cap_s": cap,
                        "worker": self.adapter.describe("kill"),
                        "idle_worker_b": b_mem,
                    }
                time.sleep(0.05)
            return {
                "rerun_s": None,
                "cap_s": cap,
                "worker": self.adapter.describe("kill"),
                "idle_worker_b": b_mem,
            }
        finally:
            a.kill()
            if b is not None:
                b.kill()

    def w_depth(self) -> dict[str, Any]:
        """Drain rate of a fresh worker over its first ``depth_small`` tasks, with ``depth_small`` queued
        and with ``depth_big`` queued: the same shape of measurement at both depths (start-up ramp
        included in both), ``depth_rounds`` times each (a 10k drain is short: single samples vary by
        a third on a busy machine), medians compared."""
        small, big = self.p["depth_small"], self.p["depth_big"]
        if big is None:
            raise Unsupported("full mode only")
        rates_small = []
        rounds = self.p["depth_rounds"]
        for _ in range(rounds):
            flushall()
            n, _how = self.fill(small, "add", self.p["fill_cap_s"])
            rates_small.append(self.timed_drain("drain", n, self.p["drain_cap_s"])["rate"])
        flushall()
        n, how = self.fill(big, "add", self.p["mem_cap_s"])
        # each worker takes the next `small` tasks off the deep queue (it stays ~`big` deep), then dies
        rates_big = [self.timed_drain("drain", small, self.p["drain_cap_s"])["rate"] for _ in range(rounds)]
        r_small, r_big = statistics.median(rates_small), statistics.median(rates_big)
        return {
            "rate_small": r_small,
            "rate_big": r_big,
            "rates_small": rates_small,
            "rates_big": rates_big,
            "queued_small": small,
            "queued_big": n,
            "big_over_small": r_big / r_small if r_small else None,
            "fill_big": how,
        }

    WORKLOADS = {
        "enqueue_one": w_enqueue_one,
        "enqueue_bulk": w_enqueue_bulk,
        "drain": w_drain,
        "drain2": w_drain2,
        "drain_sync": w_drain_sync,
        "memory": w_memory,
        "roundtrip": w_roundtrip,
        "sleep_drain": w_sleep_drain,
        "kill": w_kill,
        "depth": w_depth,
    }

    def run(self, workload: str) -> dict[str, Any]:
        flushall()
        try:
            t0 = time.monotonic()
            out = self.WORKLOADS[workload](self)
            out = {"ok": True, **out, "wall_s": round(time.monotonic() - t0, 2)}
        except Unsupported as exc:
            out = {"ok": False, "unsupported": str(exc)}
        except Exception as exc:  # one library's failure is a row in the table, not a crash
            out = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-3000:],
            }
        finally:
            try:
                self.adapter.close()
            except Exception:
                pass
            try:
                flushall()
            except Exception:
                pass
        try:
            out["version"] = self.adapter.version()
        except Exception:
            pass
        return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("lib")
    r.add_argument("workload")
    r.add_argument("--mode", default="quick", choices=sorted(PARAMS))
    r.add_argument("--out", required=True)
    r.add_argument("--tmp", default="/tmp")
    w = sub.add_parser("worker")
    w.add_argument("lib")
    w.add_argument("profile")
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        module = importlib.import_module(f"bench_{args.lib}")
        module.run_worker(args.profile)
        return
    if args.workload == "roundtrip":
        os.environ["BENCH_RESULTS"] = "1"  # before the adapter module configures its app
    driver = Driver(args.lib, args.mode, args.tmp)
    try:
        driver.load()
    except Exception as exc:
        out = {"ok": False, "error": f"import failed: {type(exc).__name__}: {exc}"}
    else:
        out = driver.run(args.workload)
    with open(args.out, "w") as f:
        json.dump(out, f)


class BaseAdapter:
    """Hooks an adapter provides; the defaults say "the library has no such thing"."""

    name = "?"
    #: worker configuration per profile (drain, sleep, results, kill), shown in the results
    configs: dict[str, str] = {}

    def version(self) -> str:
        return "?"

    def connect(self) -> None:
        """Open the producer's connection (before a memory baseline)."""

    def close(self) -> None:
        """Close producer connections."""

    def enqueue_one(self, n: int, deadline: float | None, task: str = "add") -> tuple[int, float]:
        """Send ``task`` n times, one call each; stop early at ``deadline`` (monotonic).
        Returns (tasks sent, seconds spent in the send loop)."""
        raise NotImplementedError

    def enqueue_bulk(self, n: int) -> float:
        """Send add(1, 2) n times through the bulk API; returns seconds."""
        raise Unsupported("no bulk enqueue API")

    def fill_bulk(self, n: int, task: str) -> None:
        self.enqueue_bulk_task(n, task)

    def enqueue_bulk_task(self, n: int, task: str) -> None:
        raise Unsupported("no bulk enqueue API")

    def roundtrip(self, n: int, deadline: float, warm: bool = False) -> list[float]:
        """n sequential send + wait-for-result of add(1, 2); stop at ``deadline``. Seconds each."""
        raise NotImplementedError

    def enqueue_slow(self) -> None:
        """Send one ``slow`` task (calls probe_event("start") then sleeps for minutes)."""
        raise NotImplementedError

    def worker_cmd(self, profile: str) -> list[str]:
        raise NotImplementedError

    def describe(self, profile: str) -> str:
        return self.configs.get(profile, "")


def python_worker(lib: str, profile: str) -> list[str]:
    """argv that runs ``bench_<lib>.run_worker(profile)`` with this interpreter."""
    return [sys.executable, "-m", "harness", "worker", lib, profile]


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import harness  # one module instance for the driver and the adapters (Unsupported, probe)

    harness.main()
