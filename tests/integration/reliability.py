"""The reliability table in docs/reliability.md, written by the fault tests themselves.

A fault test records one row (fault, what was checked, counts observed) through the ``reliability``
fixture. When a whole run passes with the slow tests included, ``pytest_sessionfinish`` (in
tests/conftest.py) rewrites docs/reliability.md from the rows recorded in that run, so the published
figures always come from the code as it is. A partial or failing run leaves the file alone.
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


@dataclass(slots=True)
class Row:
    test: str  # pytest node id, for ordering and for the reader to find the code
    fault: str
    checked: str
    observed: str


class Recorder:
    """Collects rows during a pytest session."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def add(self, test: str, fault: str, checked: str, observed: str) -> None:
        self.rows[f"{test}::{fault}"] = Row(test, fault, checked, observed)

    def render(self) -> str:
        today = _dt.date.today().isoformat()
        lines = [
            "# Reliability: faults survived, figures observed",
            "",
            "Written by the test suite (`tests/integration/reliability.py`) at the end of a run that",
            "passed with the slow fault and soak tests included (`scripts/test`, which `.ci/run` calls):",
            "every figure below was observed by the test named in the last column, on real",
            "`redis-server` and worker processes. Do not edit by hand.",
            "",
            f"Last written {today} on {platform.machine()} {platform.system()}, "
            f"Python {platform.python_version()}.",
            "",
            "| Fault | What was checked | Observed | Test |",
            "|---|---|---|---|",
        ]
        for row in sorted(self.rows.values(), key=lambda r: r.test):
            cells = (row.fault, row.checked, row.observed, f"`{row.test.split('::')[-1]}`")
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"


RECORDER = Recorder()
