"""docs/reliability.md is written only on request, and a whole run checks that it is current in what
is stable (rows, what each checked, the shape of what it observed), not in figures that vary."""

from __future__ import annotations

from tests.integration.reliability import REPORT, Recorder, table_rows


def recorder() -> Recorder:
    r = Recorder()
    r.add("t.py::test_kill", "kill -9 mid-task", "runs again | once", "1 task re-run 1.2 s after the kill")
    r.add("t.py::test_full", "Redis full", "no task lost", "3 refused, 0 lost in 0.31 s")
    return r


def test_the_published_file_parses_into_its_rows() -> None:
    rows = table_rows(REPORT.read_text())
    assert len(rows) > 10
    assert all(
        test.startswith("test_") and fault and checked and observed
        for (test, fault), (checked, observed) in rows
    )


def test_new_figures_do_not_make_the_file_stale() -> None:
    published = recorder().render()
    again = Recorder()
    again.add(
        "t.py::test_kill", "kill -9 mid-task", "runs again | once", "1 task re-run 0.9 s after the kill"
    )
    again.add("t.py::test_full", "Redis full", "no task lost", "3 refused, 0 lost in 1,204.5 s")
    assert again.stale(published) == []


def test_rows_and_wording_that_changed_make_it_stale() -> None:
    published = recorder().render()
    fewer = Recorder()
    fewer.add(
        "t.py::test_kill", "kill -9 mid-task", "runs again | once", "1 task re-run 1.2 s after the kill"
    )
    assert fewer.stale(published) == ["row no test records any more: Redis full (test_full)"]
    more = recorder()
    more.add("t.py::test_new", "partition", "reconnects", "ok")
    assert more.stale(published) == ["missing row: partition (test_new)"]
    checked = Recorder()
    checked.add(
        "t.py::test_kill", "kill -9 mid-task", "runs again twice", "1 task re-run 1.2 s after the kill"
    )
    checked.add("t.py::test_full", "Redis full", "no task lost", "3 refused, 0 lost in 0.31 s")
    assert "'what was checked' is now" in checked.stale(published)[0]
    observed = Recorder()
    observed.add(
        "t.py::test_kill", "kill -9 mid-task", "runs again | once", "1 task re-run 1.2 s after the kill"
    )
    observed.add("t.py::test_full", "Redis full", "no task lost", "3 refused, 2 lost in 0.31 s, 1 duplicated")
    assert "observed now" in observed.stale(published)[0]
    assert recorder().stale("") != []  # no file at all
