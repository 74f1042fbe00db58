"""Typed tasks: mypy keeps a task's parameter and return types (tests/typing/typed_tasks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

TYPED = Path(__file__).parent.parent / "typing" / "typed_tasks.py"


def test_mypy_checks_task_arguments_and_results() -> None:
    # --warn-unused-ignores: an expected error that mypy does not report fails the run
    out, err, status = api.run(
        [str(TYPED), "--strict", "--warn-unused-ignores", "--no-incremental", "--cache-dir=/dev/null"]
    )
    assert status == 0, out + err
