"""Workflow figures of issue 11, celeriac and Celery measured in the same run on one private Redis.

    .venv/bin/python benchmarks/workflows.py            # about 5 minutes on 2 idle cores
    .venv/bin/python benchmarks/workflows.py --small    # smaller sizes (a loaded machine)

Phases (``workflows/wf_common.py``), each a subprocess of the library's own interpreter (Celery's:
``benchmarks/.peers-venv/celery``, made by ``run.py``'s installer on first use):

* ``group``: ``group(add.s(i, i) for i in range(N)).delay()``, signatures built inside the timing;
* ``memory``: Redis ``used_memory`` of a chord of N members waiting (no worker), per member, next to
  N plain queued tasks;
* ``chord``: a chord of N members and one body on one worker process (celeriac: threads pool,
  concurrency 100; Celery: solo pool); Redis commands (``INFO commandstats``, every command,
  including those run inside Lua scripts) from the send until the body starts, minus the same for N
  plain tasks, per member; and how long after the last member finished the body started (both run
  in the one worker process, so one clock);
* ``chain``: a chain of N steps on an idle worker: time between the starts of consecutive steps
  (p50, p90, p99), and the worker process's CPU time per hop (user + system, every thread: less
  sensitive to other load than the times). celeriac's worker: threads pool, concurrency 100; the
  variants ``chain:POOL`` (``chain:asyncio``, ``chain:processes`` with one child, ``chain:gevent``)
  run on another pool, and
  ``chain:POOL+async`` with the step an ``async def`` task (on the asyncio pool it runs on the
  worker's loop); Celery runs only the plain ``chain`` (solo pool).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SIZES = {
    "full": {"celeriac": {"group": 100_000, "memory": 100_000, "chord": 100_000, "chain": 200},
             "celery": {"group": 20_000, "memory": 20_000, "chord": 10_000, "chain": 200}},
    "small": {"celeriac": {"group": 100_000, "memory": 20_000, "chord": 20_000, "chain": 100},
              "celery": {"group": 5_000, "memory": 5_000, "chord": 2_000, "chain": 100}},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default="celeriac,celery")
    parser.add_argument("--phases", default="group,memory,chord,chain,chain:asyncio,chain:asyncio+async")
    args = parser.parse_args()
    import run

    from celeriac.testing import RedisServer

    pythons = {"celeriac": Path(sys.executable)}
    if "celery" in args.only:
        py, err = run.ensure_venv("celery", run.PEERS["celery"])
        if py is None:
            raise SystemExit(f"celery: {err}")
        pythons["celery"] = py
    sizes = SIZES["small" if args.small else "full"]
    results: dict[str, dict[str, Any]] = {}
    with RedisServer() as server, tempfile.TemporaryDirectory() as out_dir:
        for phase in args.phases.split(","):
            kind, _, variant = phase.partition(":")
            pool, _, step = variant.partition("+")
            for lib in args.only.split(","):
                if variant and lib != "celeriac":
                    continue  # Celery's chain runs once, on its solo pool
                n = sizes[lib][kind]
                env = {
                    **os.environ,
                    "BENCH_POOL": pool,
                    "BENCH_ASYNC_STEP": "1" if step == "async" else "",
                    "BENCH_REDIS_URL": server.url,
                    "BENCH_OUT_DIR": out_dir,
                    # a snapshot of src/ given in PYTHONPATH (as run.py's --celeriac-ref) stays ahead
                    "PYTHONPATH": os.pathsep.join(
                        [str(HERE / "workflows"), os.environ.get("PYTHONPATH", "")]
                    ),
                }
                t0 = time.monotonic()
                proc = subprocess.run(
                    [str(pythons[lib]), "-m", f"wf_{lib}", kind, str(n)],
                    cwd=HERE / "workflows",
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                try:
                    figure = json.loads(line)
                except ValueError:
                    figure = {"error": (proc.stderr or "no output")[-500:]}
                results.setdefault(lib, {})[phase] = figure
                print(
                    f"{lib:9} {phase:7} n={n:<7} ({time.monotonic() - t0:.0f} s) {json.dumps(_short(figure))}",
                    flush=True,
                )
    print()
    print(table(results))
    out = HERE / "results" / "latest-workflows.json"
    stamp = {"time": time.strftime("%Y-%m-%d %H:%M"), "loadavg_1_5_15": os.getloadavg(), "argv": sys.argv[1:]}
    out.write_text(json.dumps({**stamp, "results": results}, indent=1))
    print(f"\nwritten: {out.relative_to(HERE.parent)}")


def _short(figure: dict[str, Any]) -> dict[str, Any]:
    out = dict(figure)
    for key in ("chord", "plain"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != "by_command"}
    return out


def _get(results: dict[str, Any], lib: str, phase: str, key: str, sub: str | None = None) -> Any:
    figure = results.get(lib, {}).get(phase, {})
    if sub is not None:
        figure = figure.get(sub, {})
    return figure.get(key)


def table(results: dict[str, Any]) -> str:
    rows = [
        ("group sent (tasks/s)", "group", "rate", None, "{:,.0f}", ">= 80,000"),
        (
            "waiting chord: Redis bytes / member",
            "memory",
            "chord_per_member",
            None,
            "{:,.0f}",
            "<= 100 + results",
        ),
        ("  (a plain queued task, for reference)", "memory", "plain_per_member", None, "{:,.0f}", ""),
        (
            "chord: extra commands / member sent by clients",
            "chord",
            "extra_client_commands_per_member",
            None,
            "{:.3f}",
            "<= 0.5",
        ),
        (
            "chord: extra commands / member incl. in scripts",
            "chord",
            "extra_commands_per_member",
            None,
            "{:.2f}",
            "",
        ),
        ("chord: body starts after last member (ms)", "chord", "lag_s", "chord", "{:.1f}", "<= 50"),
    ]
    for phase in dict.fromkeys(p for lib in results for p in results[lib] if p.startswith("chain")):
        where = phase.partition(":")[2] or "threads"
        for key, label, fmt, bar in (
            ("hop_p50_ms", "per-hop p50", "{:.2f}", "<= 1"),
            ("hop_p99_ms", "per-hop p99", "{:.2f}", ""),
            ("worker_cpu_ms_per_hop", "worker CPU per hop", "{:.2f}", ""),
        ):
            # Celery's one chain run (solo pool) stands beside each of celeriac's pools
            rows.append((f"chain ({where}): {label}, idle worker (ms)", phase, key, None, fmt, bar))
    libs = list(results)
    lines = [f"| figure | {' | '.join(libs)} | bar (celeriac) |", "|---|" + "---|" * len(libs) + "---|"]
    for label, phase, key, sub, fmt, bar in rows:
        if not any(phase in results[lib] for lib in libs):
            continue  # a phase not run this time
        cells = []
        for lib in libs:
            value = _get(results, lib, phase if lib == "celeriac" else phase.partition(":")[0], key, sub)
            if key == "lag_s" and value is not None:
                value *= 1000
            cells.append(fmt.format(value) if isinstance(value, (int, float)) else "error")
        lines.append(f"| {label} | {' | '.join(cells)} | {bar} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
