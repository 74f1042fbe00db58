"""Instructions a command executes, counted by ``valgrind --tool=callgrind`` (shared by the benchmarks
that count instructions: a figure that machine load does not move)."""

from __future__ import annotations

import re
import subprocess


def collected(argv: list[str]) -> int:
    """The instructions ``argv`` executes under callgrind (no profile file is kept)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))
