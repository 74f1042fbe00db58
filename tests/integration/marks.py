"""Run records of ``itest.mark`` (tests/integration/apps.py): one line per run, in one file per worker
process, so a test can count runs without the Redis it kills or fills."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .conftest import REPO, CliWorker


def read_marks(directory: Path) -> Counter[str]:
    """How many times each token ran, over every worker process's file (complete lines only: a
    worker killed mid-write can leave a partial last line, which is not a run it recorded)."""
    runs: Counter[str] = Counter()
    for path in directory.glob("marks-*"):
        data = path.read_bytes()
        runs.update(line.decode() for line in data[: data.rfind(b"\n") + 1].splitlines())
    return runs


def mark_worker_starter(url: str, directory: Path, **env: str) -> Callable[..., CliWorker]:
    """``start(name, *args)``: a ``celeriac worker -n name *args`` of tests/integration/apps.py whose
    ``itest.mark`` runs are written under ``directory``; returns once it consumes."""

    def start(name: str, *args: str, wait: bool = True) -> CliWorker:
        worker = CliWorker(
            ("-n", name, *args),
            {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                "CELERIAC_BROKER_URL": url,
                "ITEST_MARK_DIR": str(directory),
                **env,
            },
        )
        if wait:
            worker.wait_ready()
        return worker

    return start
