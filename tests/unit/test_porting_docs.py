"""docs/porting.md says the truth: its settings table is the one generated from the decision table,
each worker flag it says celeriac accepts is accepted by ``celeriac worker`` (and each it says is not,
is not), every flag of Celery's ``worker`` command is listed, and the import paths it lists import."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest

from celeriac.cli import main
from celeriac.config import celery_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "porting.md"

#: every option of Celery 5's `celery worker` (and the global ones a worker line uses)
CELERY_WORKER_FLAGS = [
    "-A",
    "--app",
    "-b",
    "--broker",
    "--result-backend",
    "--loader",
    "--config",
    "--workdir",
    "-C",
    "--no-color",
    "-q",
    "--quiet",
    "--skip-checks",
    "-n",
    "--hostname",
    "-D",
    "--detach",
    "-S",
    "--statedb",
    "-l",
    "--loglevel",
    "-O",
    "--prefetch-multiplier",
    "-c",
    "--concurrency",
    "-P",
    "--pool",
    "-E",
    "--task-events",
    "--time-limit",
    "--soft-time-limit",
    "--max-tasks-per-child",
    "--max-memory-per-child",
    "--purge",
    "--discard",
    "-Q",
    "--queues",
    "-X",
    "--exclude-queues",
    "-I",
    "--include",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "--heartbeat-interval",
    "--autoscale",
    "-B",
    "--beat",
    "-s",
    "--schedule-filename",
    "--scheduler",
    "--pidfile",
    "--uid",
    "--gid",
    "--umask",
    "--executable",
    "-f",
    "--logfile",
]


def _worker_options() -> set[str]:
    worker = main.get_command(click.Context(main), "worker")
    assert worker is not None
    return {o for p in [*worker.params, *main.params] for o in (*p.opts, *p.secondary_opts)}


def _flag_rows() -> list[tuple[list[str], bool]]:
    text = PAGE.read_text()
    section = text.split("## Worker command line", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, rest = line[2:].split(" | ", 1)
        flags = [f.split("=")[0] for cell in re.findall(r"`([^`]+)`", first) for f in cell.split("/")]
        rows.append((flags, not rest.startswith("**no**")))
    return rows


def test_settings_table_is_the_generated_one() -> None:
    assert celery_table() in PAGE.read_text(), (
        "docs/porting.md's settings table is stale: paste "
        'python -c "from celeriac.config import celery_table; print(celery_table())"'
    )


def test_every_celery_worker_flag_is_listed() -> None:
    listed = {f for flags, _ in _flag_rows() for f in flags}
    assert sorted(set(CELERY_WORKER_FLAGS) - listed) == []


@pytest.mark.parametrize(("flags", "accepted"), _flag_rows(), ids=lambda v: str(v))
def test_flag_rows_match_the_command(flags: list[str], accepted: bool) -> None:
    options = _worker_options()
    for flag in flags:
        assert (flag in options) is accepted, f"{flag}: the page says {'yes' if accepted else 'no'}"


def test_import_paths_import() -> None:
    import celeriac

    for name in ("Celery", "shared_task", "Task", "signature", "current_app", "current_task"):
        assert getattr(celeriac, name) is not None
    for module, names in {
        "celeriac.states": [],
        "celeriac.result": ["AsyncResult"],
        "celeriac.exceptions": [
            "SoftTimeLimitExceeded",
            "TimeLimitExceeded",
            "MaxRetriesExceededError",
            "Retry",
            "Reject",
            "Ignore",
        ],
        "celeriac.utils.log": ["get_task_logger"],
        "celeriac.signals": ["task_failure", "worker_process_init", "import_modules"],
        "celeriac.contrib.testing.worker": ["start_worker"],
        "celeriac.contrib.pytest": ["celery_app", "celery_worker"],
        "celeriac.contrib.flask": ["celery_init_app"],
        "celeriac.contrib.django": ["fixup"],
    }.items():
        imported = importlib.import_module(module)
        for name in names:
            assert hasattr(imported, name), f"{module}.{name}"
