"""The reliability table in docs/reliability.md, written by the fault tests themselves.

A fault test records one row (fault, what was checked, counts observed) through the ``reliability``
fixture. At the end of a whole run that passed with the slow tests included, ``pytest_sessionfinish``
(tests/integration/conftest.py) either

* writes docs/reliability.md from the rows of that run, when asked: ``pytest --write-reliability``
  (``scripts/test --write-reliability``) or ``CELERIAC_WRITE_RELIABILITY=1``; or
* checks that the file is current and fails the run when it is not, saying how to regenerate it.
  A test run never modifies the checkout (``scripts/test`` checks that too).

What "current" can honestly mean: the figures a fault test observes (seconds after a kill, counts of
random bad input) vary from run to run, so they cannot match the file's. The check compares what is
stable: the same rows (test and fault), each with the same "what was checked" text, and an observed
text of the same shape, i.e. equal once every number is masked. A row added, removed or reworded, or
an observation that now reports something else, makes the file stale; a new timing does not.
A partial or failing run neither writes nor checks.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
from dataclasses import dataclass
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
REGENERATE = "scripts/test --write-reliability (a whole passing run, slow tests included), then commit it"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


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
            "Written by the test suite (`tests/integration/reliability.py`) when asked, at the end of a",
            "run that passed with the slow fault and soak tests included (`scripts/test",
            "--write-reliability`): every figure below was observed by the test named in the last",
            "column, on real `redis-server` and worker processes. Every whole run (`scripts/test`, which",
            "`.ci/run` calls) checks that the rows are current (figures vary from run to run and are",
            "not compared). Do not edit by hand.",
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

    def stale(self, text: str) -> list[str]:
        """How the published table ``text`` differs from this run's rows in what is stable (empty:
        the file is current). See the module docstring for what is compared."""
        published = {key: value for key, value in table_rows(text)}
        current = {key: value for key, value in table_rows(self.render())}
        problems = [f"missing row: {k[1]} ({k[0]})" for k in current if k not in published]
        problems += [f"row no test records any more: {k[1]} ({k[0]})" for k in published if k not in current]
        for key in current.keys() & published.keys():
            (checked, observed), (was_checked, was_observed) = current[key], published[key]
            if checked != was_checked:
                problems.append(
                    f"{key[1]}: 'what was checked' is now {checked!r}, the file says {was_checked!r}"
                )
            elif shape(observed) != shape(was_observed):
                problems.append(f"{key[1]}: observed now {observed!r}, the file says {was_observed!r}")
        return sorted(problems)


def shape(observed: str) -> str:
    """An observation with its figures masked: ``1.2 s after the kill`` -> ``# s after the kill``."""
    return _NUMBER.sub("#", observed)


def table_rows(text: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """``((test, fault), (checked, observed))`` for each row of a rendered table."""
    out = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith(("| Fault |", "|---")):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        if len(cells) != 4:
            continue
        fault, checked, observed, test = cells
        out.append(((test.strip("`"), fault), (checked, observed)))
    return out


RECORDER = Recorder()
