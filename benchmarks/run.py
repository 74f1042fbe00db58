"""celeriac against its peers, side by side, in one run on one private Redis.

    .venv/bin/python benchmarks/run.py --quick                 # a few minutes
    .venv/bin/python benchmarks/run.py --full                  # the README's table (about 2 hours)
    .venv/bin/python benchmarks/run.py --quick --only celeriac,celery,huey

Runs under celeriac's own virtualenv (it uses rich and ``celeriac.testing.RedisServer``). The peers
live in ``benchmarks/.peers-venv/<peer>/``, one virtualenv each (their pinned Redis clients conflict:
arq wants redis<6, kombu >=6.4, saq <8, taskiq-redis >=8), created on first use. Every library is
measured by the same driver (``adapters/harness.py``) running under that library's interpreter; see
README.md for what each workload measures and how.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

HERE = Path(__file__).resolve().parent
ADAPTERS = HERE / "adapters"
PEERS_VENV = HERE / ".peers-venv"
RESULTS = HERE / "results"

#: pinned versions that install together (per virtualenv); hiredis where the library uses redis-py
PEERS: dict[str, list[str]] = {
    "celery": ["celery[redis]==5.7.0", "hiredis==3.5.0"],
    "dramatiq": ["dramatiq[redis]==2.2.1", "hiredis==3.5.0"],
    "huey": ["huey==3.5.4", "redis==8.1.0", "hiredis==3.5.0"],
    "rq": ["rq==2.12.0", "hiredis==3.5.0"],
    "arq": ["arq==0.28.0"],  # pulls redis[hiredis]<6
    "saq": ["saq[redis,hiredis]==0.26.4", "typing_extensions"],  # saq imports typing_extensions undeclared
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis==3.5.0"],
    "streaq": ["streaq==7.2.0"],  # coredis
}
TOOLS = ["matplotlib==3.11.2", "py-spy==0.4.3"]
LIBS = ["celeriac", *PEERS]

WORKLOADS = {
    "quick": ["enqueue_one", "enqueue_bulk", "drain", "drain_sync", "memory", "roundtrip", "sleep_drain"],
    "full": [
        "enqueue_one",
        "enqueue_bulk",
        "drain",
        "drain2",
        "drain_sync",
        "memory",
        "roundtrip",
        "sleep_drain",
        "depth",
    ],
}
PARALLEL_WORKLOADS = ["kill"]  # mostly waiting: every library at once, each on its own Redis
# One-at-a-time sending is a round trip per task, so its rate follows the machine's load from second to
# second: measured in one block per library, a peer measured in a quiet minute beat celeriac measured
# in a busy one (x0.58 in a run where interleaved rounds gave x1.5-2). So it runs in rounds, every
# library in turn in each round, and the table shows each library's median round. Bulk sends are short
# (a fraction of a second for celeriac) and move as much: three rounds of the whole size each.
INTERLEAVED_ROUNDS = {"enqueue_one": 5, "enqueue_bulk": 3}
# the size a round takes: one-at-a-time sends split the mode's count between rounds; a bulk send keeps
# its whole size (its rate depends on it)
SPLIT_BETWEEN_ROUNDS = {"enqueue_one": "enqueue_n"}
TIMEOUT_S = {"quick": 300, "full": 3600}

# rows of the table: (label, workload, key, unit, higher_is_better, format)
ROWS: list[tuple[str, str, str, str, bool, str]] = [
    ("enqueue, one at a time", "enqueue_one", "rate", "tasks/s", True, "{:,.0f}"),
    ("bulk enqueue", "enqueue_bulk", "rate", "tasks/s", True, "{:,.0f}"),
    ("drain, 1 worker process", "drain", "rate", "tasks/s", True, "{:,.0f}"),
    ("  celeriac with a sync def task", "drain_sync", "rate", "tasks/s", True, "{:,.0f}"),
    ("drain, 2 worker processes", "drain2", "rate", "tasks/s", True, "{:,.0f}"),
    ("Redis bytes per queued add(1,2)", "memory", "bytes_per_task", "B", False, "{:,.0f}"),
    ("delay()+get() p50", "roundtrip", "p50_ms", "ms", False, "{:.2f}"),
    ("delay()+get() p99", "roundtrip", "p99_ms", "ms", False, "{:.2f}"),
    ("Redis commands per processed task", "drain", "cmds_per_task", "cmds", False, "{:.2f}"),
    ("idle worker RSS", "roundtrip", "idle_rss_mib", "MiB", False, "{:.0f}"),
    ("kill -9 mid-task -> runs again", "kill", "rerun_s", "s", False, "{:.1f}"),
    ("drain, 50 ms async sleep, concurrency 100", "sleep_drain", "rate", "tasks/s", True, "{:,.0f}"),
    ("drain rate, 1M queued / 10k queued", "depth", "big_over_small", "ratio", True, "{:.2f}"),
]


# ---------------------------------------------------------------------------------------------------
# virtualenvs
# ---------------------------------------------------------------------------------------------------
def venv_python(name: str) -> Path:
    return PEERS_VENV / name / "bin" / "python"


def ensure_venv(name: str, requirements: list[str]) -> tuple[Path | None, str]:
    """Create/refresh ``.peers-venv/<name>`` with ``requirements``. Returns (python, error)."""
    target = PEERS_VENV / name
    marker = target / ".bench-requirements"
    want = "\n".join(requirements)
    py = venv_python(name)
    if py.exists() and marker.exists() and marker.read_text() == want:
        return py, ""
    shutil.rmtree(target, ignore_errors=True)
    PEERS_VENV.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    log = PEERS_VENV / f"{name}.install.log"
    with open(log, "w") as out:
        steps = [
            [base, "-m", "venv", str(target)],
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
        ]
        for cmd in steps:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode
            if rc != 0:
                tail = [ln for ln in log.read_text().splitlines() if ln.startswith("ERROR")][-2:]
                return None, f"install failed (see {log.relative_to(HERE)}): " + " ".join(tail)[:300]
    marker.write_text(want)
    return py, ""


# ---------------------------------------------------------------------------------------------------
# running one workload
# ---------------------------------------------------------------------------------------------------
def harness_params(mode: str) -> dict[str, Any]:
    """The driver's sizes for a mode (adapters/harness.py, which needs nothing outside the stdlib)."""
    sys.path.insert(0, str(ADAPTERS))
    try:
        import harness
    finally:
        sys.path.remove(str(ADAPTERS))
    return dict(harness.PARAMS[mode])


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from interleaved rounds: the median round's rate; every round's rate is kept."""
    good = [r for r in rounds if r.get("ok")]
    if not good:
        return rounds[-1]
    good.sort(key=lambda r: r["rate"])
    res = dict(good[len(good) // 2])
    res["round_rates"] = [round(r["rate"], 1) for r in good]
    res["n"] = sum(r.get("n", 0) for r in good)
    res["rounds_failed"] = len(rounds) - len(good)
    return res


class Runner:
    def __init__(self, mode: str, tmp: Path, celeriac_src: Path | None = None) -> None:
        self.mode = mode
        self.tmp = tmp
        self.celeriac_src = celeriac_src
        self.pids_file = tmp / "worker-pids"
        self.pids_file.touch()

    def run(
        self, lib: str, python: Path, workload: str, redis_url: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        out = self.tmp / f"{lib}-{workload}-{time.monotonic_ns()}.json"
        env = dict(os.environ)
        if params:  # sizes for this run, over the mode's (and over BENCH_PARAMS from the caller)
            env["BENCH_PARAMS"] = json.dumps({**json.loads(env.get("BENCH_PARAMS") or "{}"), **params})
        env.update(
            BENCH_REDIS_URL=redis_url,
            BENCH_PIDS_FILE=str(self.pids_file),
            PYTHONPATH=str(ADAPTERS),
            PYTHONDONTWRITEBYTECODE="1",
        )
        if lib == "celeriac" and self.celeriac_src is not None:
            # ahead of the editable install's path entry: this exported commit is what gets measured
            env["PYTHONPATH"] = f"{ADAPTERS}{os.pathsep}{self.celeriac_src}"
        for k in [k for k in env if k.startswith(("CELERIAC_", "VIRTUAL_ENV"))]:
            env.pop(k)
        cmd = [str(python), "-m", "harness", "run", lib, workload, "--mode", self.mode]
        cmd += ["--out", str(out), "--tmp", str(self.tmp)]
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ADAPTERS,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S[self.mode])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kill_workers()
            return {"ok": False, "error": f"timed out after {TIMEOUT_S[self.mode]} s"}
        if not out.exists():
            text = stdout.decode(errors="replace").strip().splitlines()
            return {"ok": False, "error": f"driver exited {proc.returncode}: " + " | ".join(text[-3:])[:400]}
        return json.loads(out.read_text())

    def kill_workers(self) -> None:
        """SIGKILL any worker a driver started and could not stop (drivers record their pids)."""
        for line in self.pids_file.read_text().split():
            try:
                os.killpg(int(line), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """What goes to the JSON file: no per-record series, short traces."""
    out = {k: v for k, v in result.items() if k not in ("records",)}
    if "trace" in out:
        out["trace"] = out["trace"][-1200:]
    return out


# ---------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------
def cell_value(res: dict[str, Any] | None, key: str, fmt: str, workload: str) -> tuple[float | None, str]:
    if res is None:
        return None, "—"
    if not res.get("ok"):
        if "unsupported" in res:
            return None, "none" if "bulk" in res["unsupported"] else "n/a"
        return None, "error"
    v = res.get(key)
    if workload == "kill" and v is None:
        return None, f">{res.get('cap_s', 0):.0f} s"
    if v is None:
        return None, "—"
    return float(v), fmt.format(v)


def ratio_text(mine: float | None, theirs: float | None, higher: bool, theirs_label: str) -> Text:
    if mine is None:
        return Text("")
    if theirs is None:
        if theirs_label.startswith(">"):  # a peer that never re-ran the task within the cap
            return Text("better", style="green")
        return Text("")
    if mine == 0 or theirs == 0:
        return Text("")
    r = mine / theirs if higher else theirs / mine
    return Text(f"x{r:.2f}" if r < 10 else f"x{r:.0f}", style="green" if r >= 1 else "red")


def bars(results: dict[str, dict[str, Any]], libs: list[str]) -> list[tuple[str, str, bool | None]]:
    """The issue's bars for celeriac: (bar, measured, passed)."""
    c = results.get("celeriac", {})
    peers = [p for p in libs if p != "celeriac"]

    def val(lib: str, w: str, k: str) -> float | None:
        r = results.get(lib, {}).get(w)
        return r.get(k) if r and r.get("ok") else None

    def best(w: str, k: str) -> tuple[str, float] | None:
        vals = [(p, val(p, w, k)) for p in peers]
        vals = [(p, v) for p, v in vals if v is not None]
        return max(vals, key=lambda pv: pv[1]) if vals else None

    out: list[tuple[str, str, bool | None]] = []
    d = val("celeriac", "drain", "rate")
    if d is not None:
        out.append(("drain >= 40,000 tasks/s", f"{d:,.0f}", d >= 40_000))
        b = best("drain", "rate")
        if b:
            out.append((f"drain >= 4x fastest peer ({b[0]} {b[1]:,.0f})", f"x{d / b[1]:.1f}", d >= 4 * b[1]))
        cel = val("celery", "drain", "rate")
        if cel:
            out.append(("drain >= 15x Celery", f"x{d / cel:.1f}", d >= 15 * cel))
    e = val("celeriac", "enqueue_one", "rate")
    b = best("enqueue_one", "rate")
    if e is not None and b:
        out.append(
            (f"enqueue one >= 1.5x fastest peer ({b[0]} {b[1]:,.0f})", f"x{e / b[1]:.2f}", e >= 1.5 * b[1])
        )
    bulk = val("celeriac", "enqueue_bulk", "rate")
    if bulk is not None:
        out.append(("bulk enqueue >= 100,000 tasks/s", f"{bulk:,.0f}", bulk >= 100_000))
    p50, p99 = val("celeriac", "roundtrip", "p50_ms"), val("celeriac", "roundtrip", "p99_ms")
    if p50 is not None and p99 is not None:
        out.append(("delay()+get() p50 <= 1 ms", f"{p50:.2f} ms", p50 <= 1.0))
        out.append(("delay()+get() p99 <= 5 ms", f"{p99:.2f} ms", p99 <= 5.0))
    m = val("celeriac", "memory", "bytes_per_task")
    if m is not None:
        n = c.get("memory", {}).get("n", 0)
        out.append((f"<= 64 B per queued add(1,2) (at {n:,})", f"{m:.1f} B", m <= 64))
    k = val("celeriac", "drain", "cmds_per_task")
    if k is not None:
        out.append(("<= 0.25 Redis commands per processed task", f"{k:.3f}", k <= 0.25))
    kill = c.get("kill")
    if kill and kill.get("ok"):
        s = kill.get("rerun_s")
        out.append(
            (
                "killed worker's task runs again within 15 s",
                f"{s:.1f} s" if s else "never",
                bool(s and s <= 15),
            )
        )
    depth = val("celeriac", "depth", "big_over_small")
    if depth is not None:
        out.append(("drain rate at 1M queued within 10% of 10k queued", f"x{depth:.2f}", depth >= 0.9))
    return out


def render(console: Console, doc: dict[str, Any]) -> None:
    results = doc["results"]
    libs = [lib for lib in LIBS if lib in results]
    peers = [p for p in libs if p != "celeriac"]
    table = Table(
        title=f"celeriac vs peers ({doc['mode']} mode, {doc['date']}, {doc['machine']['cpus']} cores)",
        caption="xN: celeriac is N times better (higher rate, or lower cost); red: celeriac is worse. "
        "none: the library has no such API.",
        show_lines=False,
    )
    table.add_column("metric", no_wrap=True)
    table.add_column("unit")
    table.add_column("celeriac", justify="right", style="bold")
    for p in peers:
        table.add_column(p, justify="right")
    errors: list[str] = []
    for label, w, key, unit, higher, fmt in ROWS:
        if w not in {x for lib in libs for x in results[lib]}:
            continue
        mine, mine_s = cell_value(results.get("celeriac", {}).get(w), key, fmt, w)
        row: list[Any] = [label, unit, mine_s]
        for p in peers:
            res = results[p].get(w)
            if w == "drain_sync":
                row.append("")
                continue
            theirs, s = cell_value(res, key, fmt, w)
            if s == "error":
                errors.append(f"{p} / {w}: {res.get('error', '')[:300]}")
            cell = Text(s)
            if s not in ("—", "none", "n/a", "error") and w != "depth":  # a ratio of ratios means little
                cell.append("\n")
                cell.append_text(ratio_text(mine, theirs, higher, s))
            elif s == "error":
                cell.stylize("red")
            row.append(cell)
        table.add_row(*row)
    console.print(table)
    vers = ", ".join(f"{lib} {doc['versions'].get(lib, '?')}" for lib in libs)
    console.print(f"[dim]versions: {vers}[/dim]")
    console.print(f"[dim]celeriac code: {doc.get('celeriac_code', '?')}[/dim]")
    for e in errors:
        console.print(f"[red]error[/red] {e}")
    b = bars(results, libs)
    if b:
        bt = Table(title="celeriac against the bars of issue 4 (same run)")
        bt.add_column("bar")
        bt.add_column("measured", justify="right")
        bt.add_column("", justify="center")
        for name, measured, ok in b:
            bt.add_row(name, measured, Text("met", style="green") if ok else Text("MISSED", style="bold red"))
        console.print(bt)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(HERE.parent), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def export_celeriac(ref: str, into: Path) -> tuple[Path, str]:
    """``src/`` of celeriac as committed at ``ref``, extracted under ``into``; returns (src dir, sha)."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", sha, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src", sha


def describe_celeriac(ref_sha: str | None) -> str:
    """Which celeriac code was measured (the commit, and whether the work tree had edits)."""
    if ref_sha:
        return f"commit {ref_sha[:10]} (exported with --celeriac-ref)"
    try:
        head = git("rev-parse", "--short=10", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "src"))
    except (OSError, subprocess.CalledProcessError):
        return "work tree (not a git checkout)"
    return f"work tree at {head}" + (" + uncommitted changes in src/" if dirty else "")


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    """The table's figures only (small enough to commit): metric -> library -> value or a word."""
    table: dict[str, dict[str, Any]] = {}
    for label, w, key, unit, _higher, _fmt in ROWS:
        row = {}
        for lib, ws in doc["results"].items():
            res = ws.get(w)
            if res is None:
                continue
            v, s = cell_value(res, key, "{}", w)
            row[lib] = round(v, 3) if v is not None else s
        if row:
            table[f"{label.strip()} ({unit})"] = row
    return {
        "mode": doc["mode"],
        "date": doc["date"],
        "machine": {k: doc["machine"].get(k) for k in ("cpus", "cpu", "python", "redis")},
        "celeriac_code": doc.get("celeriac_code"),
        "versions": doc["versions"],
        "table": table,
        "bars": [
            {"bar": b, "measured": m, "met": ok} for b, m, ok in bars(doc["results"], list(doc["results"]))
        ],
    }


# ---------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_v.split(" sha=")[0],
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_const", dest="mode", const="quick", help="a few minutes (default)"
    )
    mode.add_argument("--full", action="store_const", dest="mode", const="full", help="the README table")
    ap.add_argument("--only", help="comma-separated libraries (default: all)")
    ap.add_argument("--workloads", help="comma-separated workloads (default: all of the mode, plus kill)")
    ap.add_argument("--no-kill", action="store_true", help="skip the kill -9 test")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument(
        "--celeriac-ref",
        metavar="REF",
        help="measure celeriac as committed at this git ref (e.g. HEAD) instead of the work tree, so that "
        "uncommitted edits (yours or another session's) cannot change the code under measurement mid-run",
    )
    ap.add_argument("--width", type=int, default=0, help="table width (default: terminal, at least 170)")
    args = ap.parse_args(argv)
    args.mode = args.mode or "quick"

    from celeriac.testing.server import RedisServer

    width = args.width or max(170, shutil.get_terminal_size((170, 40)).columns)
    console = Console(width=width)
    libs = LIBS if not args.only else [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in libs if x not in LIBS]
    if unknown:
        ap.error(f"unknown libraries {unknown}; choose from {', '.join(LIBS)}")
    libs = [x for x in LIBS if x in libs]
    workloads = WORKLOADS[args.mode] + ([] if args.no_kill else PARALLEL_WORKLOADS)
    if args.workloads:
        wanted = [w.strip() for w in args.workloads.split(",")]
        workloads = [w for w in [*WORKLOADS["full"], *PARALLEL_WORKLOADS] if w in wanted]

    doc: dict[str, Any] = {
        "mode": args.mode,
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info(),
        "versions": {},
        "configs": {},
        "results": {lib: {} for lib in libs},
    }
    pythons: dict[str, Path] = {}
    setup_errors: dict[str, str] = {}

    # 1. interpreters: celeriac's own, and one virtualenv per peer
    pythons_wanted = [lib for lib in libs if lib != "celeriac"]
    if "celeriac" in libs:
        pythons["celeriac"] = Path(sys.executable)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as prog:
        job = prog.add_task("peer virtualenvs (.peers-venv/)", total=len(pythons_wanted) + 1)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futs = {pool.submit(ensure_venv, p, PEERS[p]): p for p in pythons_wanted}
            tools_fut = pool.submit(ensure_venv, "tools", TOOLS)
            for fut in concurrent.futures.as_completed([*futs, tools_fut]):
                name = futs.get(fut, "tools")
                py, err = fut.result()
                if name == "tools":
                    tools_py, tools_err = py, err
                elif py is None:
                    setup_errors[name] = err
                else:
                    pythons[name] = py
                prog.update(
                    job, advance=1, description=f"peer virtualenvs: {name} {'ok' if py else 'FAILED'}"
                )
    for lib, err in setup_errors.items():
        console.print(f"[red]{lib}[/red]: {err}")
        for w in workloads:
            doc["results"][lib][w] = {"ok": False, "error": err}

    tmp = Path(tempfile.mkdtemp(prefix="celeriac-bench-"))
    celeriac_src, ref_sha = None, None
    if args.celeriac_ref and "celeriac" in libs:
        (tmp / "celeriac-export").mkdir()
        celeriac_src, ref_sha = export_celeriac(args.celeriac_ref, tmp / "celeriac-export")
    doc["celeriac_code"] = describe_celeriac(ref_sha)
    console.print(f"celeriac measured from: {doc['celeriac_code']}")
    runner = Runner(args.mode, tmp, celeriac_src)
    runnable = [lib for lib in libs if lib in pythons]
    sequential = [w for w in workloads if w not in PARALLEL_WORKLOADS]
    parallel = [w for w in workloads if w in PARALLEL_WORKLOADS]

    def record(lib: str, w: str, res: dict[str, Any]) -> None:
        doc["results"][lib][w] = res
        if res.get("version"):
            doc["versions"][lib] = res["version"]
        if res.get("worker"):
            doc["configs"].setdefault(lib, {})[w] = res["worker"]

    def summary(lib: str, w: str, res: dict[str, Any]) -> str:
        if not res.get("ok"):
            if "unsupported" in res:
                return f"[dim]{lib:9} {w:12} {res['unsupported']}[/dim]"
            return f"[red]{lib:9} {w:12} {res.get('error', '')[:150]}[/red]"
        key = {
            "memory": "bytes_per_task",
            "roundtrip": "p50_ms",
            "kill": "rerun_s",
            "depth": "big_over_small",
        }
        k = key.get(w, "rate")
        v = res.get(k)
        extra = (
            f" ({res['cmds_per_task']:.2f} cmds/task)" if w == "drain" and res.get("cmds_per_task") else ""
        )
        return f"{lib:9} {w:12} {k} = {v if v is None else f'{v:,.2f}'}{extra}  [dim]{res.get('wall_s', '')} s[/dim]"

    t_start = time.monotonic()
    try:
        with RedisServer() as server:
            doc["machine"]["redis_port"] = server.port
            columns = [
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ]
            with Progress(*columns, console=console) as prog:
                total = len(runnable) * len(sequential) + (len(runnable) if parallel else 0)
                job = prog.add_task("benchmarks", total=total)
                # 2. one workload at a time, every library in turn (so ratios compare close moments)
                for w in sequential:
                    if w in INTERLEAVED_ROUNDS:
                        rounds = INTERLEAVED_ROUNDS[w]
                        split = SPLIT_BETWEEN_ROUNDS.get(w)
                        per_round = (
                            {split: max(100, harness_params(args.mode)[split] // rounds)} if split else None
                        )
                        runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in runnable}
                        for r in range(rounds):
                            for lib in runnable:
                                prog.update(job, description=f"{w}: {lib} (round {r + 1} of {rounds})")
                                runs[lib].append(runner.run(lib, pythons[lib], w, server.url, per_round))
                                prog.update(job, advance=1 / rounds)
                        for lib in runnable:
                            res = median_round(runs[lib])
                            record(lib, w, res)
                            console.print(summary(lib, w, res))
                        continue
                    for lib in runnable:
                        if w == "drain_sync" and lib != "celeriac":
                            prog.update(job, advance=1)
                            continue
                        prog.update(job, description=f"{w}: {lib}")
                        res = runner.run(lib, pythons[lib], w, server.url)
                        record(lib, w, res)
                        console.print(summary(lib, w, res))
                        prog.update(job, advance=1)
                # 3. the kill test: every library at once, each with its own Redis
                for w in parallel:
                    prog.update(job, description=f"{w}: all libraries at once (each on its own Redis)")
                    servers = {lib: RedisServer().start() for lib in runnable}
                    try:
                        with concurrent.futures.ThreadPoolExecutor(len(runnable)) as pool:
                            futs = {
                                pool.submit(runner.run, lib, pythons[lib], w, servers[lib].url): lib
                                for lib in runnable
                            }
                            for fut in concurrent.futures.as_completed(futs):
                                lib = futs[fut]
                                res = fut.result()
                                record(lib, w, res)
                                console.print(summary(lib, w, res))
                                prog.update(job, advance=1)
                    finally:
                        for s in servers.values():
                            s.stop()
    finally:
        runner.kill_workers()
        shutil.rmtree(tmp, ignore_errors=True)

    doc["machine"]["loadavg_end"] = os.getloadavg()
    doc["wall_s"] = round(time.monotonic() - t_start, 1)
    doc["results"] = {lib: {w: slim(r) for w, r in ws.items()} for lib, ws in doc["results"].items()}
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # a partial run (--only, --workloads, --no-kill) must not replace the latest complete table
    kind = args.mode + ("-partial" if args.only or args.workloads or args.no_kill else "")
    out_json = RESULTS / f"{kind}-{stamp}.json"
    out_json.write_text(json.dumps(doc, indent=1))
    shutil.copyfile(out_json, RESULTS / f"latest-{kind}.json")
    summary_path = RESULTS / f"latest-{kind}-summary.json"
    summary_path.write_text(json.dumps(summarize(doc), indent=1))
    console.print()
    render(console, doc)
    console.print(
        f"raw figures: {out_json.relative_to(HERE.parent)} (and results/latest-{kind}.json); "
        f"table figures: results/{summary_path.name}"
    )
    if not args.no_chart:
        if tools_py is None:
            console.print(f"[yellow]no chart: {tools_err}[/yellow]")
        else:
            png = RESULTS / f"latest-{kind}.png"
            rc = subprocess.run([str(tools_py), str(HERE / "chart.py"), str(out_json), str(png)]).returncode
            if rc == 0:
                console.print(f"chart: {png.relative_to(HERE.parent)}")
            else:
                console.print("[yellow]chart failed[/yellow]")
    console.print(f"[dim]wall time {doc['wall_s']:.0f} s[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
