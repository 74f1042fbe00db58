"""Draw the benchmark figures of one results JSON as a PNG (run with the tools venv: matplotlib).

benchmarks/.peers-venv/tools/bin/python benchmarks/chart.py results/latest-quick.json out.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ORDER = ["celeriac", "celery", "dramatiq", "huey", "rq", "arq", "saq", "taskiq", "streaq"]
PANELS = [
    ("enqueue one at a time (tasks/s, higher is better)", "enqueue_one", "rate"),
    ("bulk enqueue (tasks/s)", "enqueue_bulk", "rate"),
    ("drain, 1 worker process (tasks/s)", "drain", "rate"),
    ("drain, 50 ms async sleep @100 (tasks/s)", "sleep_drain", "rate"),
    ("Redis bytes per queued add(1,2) (lower is better)", "memory", "bytes_per_task"),
    ("Redis commands per processed task (lower)", "drain", "cmds_per_task"),
    ("delay()+get() p50 (ms, lower)", "roundtrip", "p50_ms"),
    ("idle worker RSS (MiB, lower)", "roundtrip", "idle_rss_mib"),
    ("kill -9 mid-task -> runs again (s, lower; hatched = never within cap)", "kill", "rerun_s"),
]


def main(src: str, dst: str) -> None:
    with open(src) as f:
        doc = json.load(f)
    res = doc["results"]
    libs = [lib for lib in ORDER if lib in res]
    fig, axes = plt.subplots(3, 3, figsize=(16, 12))
    for ax, (title, w, key) in zip(axes.flat, PANELS):
        names, vals, hatches = [], [], []
        for lib in libs:
            r = res[lib].get(w)
            if not r or not r.get("ok"):
                continue
            v = r.get(key)
            hatch = ""
            if w == "kill" and v is None:
                v, hatch = r.get("cap_s", 60), "//"
            if v is None:
                continue
            names.append(lib)
            vals.append(v)
            hatches.append(hatch)
        colors = ["#d9480f" if n == "celeriac" else "#4c6ef5" for n in names]
        bars = ax.bar(names, vals, color=colors)
        for b, h in zip(bars, hatches):
            if h:
                b.set_hatch(h)
                b.set_alpha(0.5)
        positive = [v for v in vals if v > 0]
        if positive and max(positive) / max(min(positive), 1e-9) > 30:
            ax.set_yscale("log")
        for b, v, h in zip(bars, vals, hatches):
            ax.annotate(
                f">{v:,.0f}" if h else f"{v:,.0f}" if v >= 10 else f"{v:.2f}",
                (b.get_x() + b.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    m = doc.get("machine", {})
    fig.suptitle(
        f"celeriac vs peers: {doc['mode']} mode, {doc['date']}, {m.get('cpus')} cores, {m.get('redis', '')}"
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=72)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
