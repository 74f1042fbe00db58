"""``celeriac check-celery``: run as a user would (a subprocess, output piped) on a fixture Celery
project, and each verdict compared with what celeriac itself accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celeriac import Celeriac
from celeriac._migrate import Status, scan
from celeriac._migrate._oracle import check_import, check_setting, check_task_option
from celeriac.config import Config
from celeriac.exceptions import CeleriacError

PROJECT = Path(__file__).parent.parent / "fixtures" / "celery_project"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celeriac", "check-celery", *args],
        capture_output=True,  # stdout is a pipe, as with `| grep` or `> file`
        text=True,
        timeout=60,
    )


def _accepted(name: str, value: object) -> bool:
    try:
        Config().update({name: value})
    except CeleriacError:
        return False
    return True


def test_piped_output_keeps_every_finding_whole_and_exits_1_when_edits_are_needed() -> None:
    done = _run(str(PROJECT))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    # things celeriac will never have: stable verdicts
    for line in (
        "Procfile:3: flag --bogus-flag -> remove --bogus-flag (`celeriac worker` has no --bogus-flag option)",
        "proj/tasks.py:2: import from celery.contrib.abortable import AbortableTask -> no "
        "celeriac.contrib.abortable: remove the import",
        "proj/tasks.py:5: import from kombu import Queue -> remove it: queues are plain names in celeriac",
        "proj/tasks.py:13: task option scrape: no_such_option -> remove no_such_option=",
        "proj/celery.py:15: setting task_definitely_not_a_setting -> change or remove it",
        "proj/settings.py:7: setting CELERY_NOT_A_REAL_SETTING (not_a_real_setting) -> change or remove it",
        "proj/tasks.py:22: usage results read (.get / AsyncResult)",
        "Procfile:2: flag -P gevent",
        "Procfile:2: flag -c 100",
        "deploy/celery.service:3: flag --loglevel info",  # a continued line, numbered by its first line
    ):
        assert line in out, f"missing: {line}\n{out}"
    assert "--this-is-a-comment" not in out  # commented-out command lines are not read
    assert "gunicorn" not in out
    assert out.rstrip().endswith("port as is")


def test_json_is_one_document_whose_summary_counts_its_findings() -> None:
    done = _run(str(PROJECT), "--json")
    data = json.loads(done.stdout)
    findings = data["findings"]
    for status in Status:
        assert data["summary"][status.value] == sum(f["status"] == status.value for f in findings)
    assert data["summary"]["files"] == 7
    assert {f["path"] for f in findings} >= {
        "Procfile",
        "docker-compose.yml",
        "deploy/celery.service",
        "proj/celery.py",
        "proj/settings.py",
        "proj/tasks.py",
        "proj/celeryconfig.py",
    }
    only = json.loads(_run(str(PROJECT), "--json", "--only", "edit").stdout)
    assert only["findings"] and all(f["status"] == "edit" for f in only["findings"])


def test_each_setting_verdict_is_what_config_accepts() -> None:
    """The verdicts follow celeriac, not a table: a setting that Config accepts ports."""
    report = scan(PROJECT)
    values = {
        ("proj/celery.py", "task_ignore_result"): True,
        ("proj/celery.py", "task_store_errors_even_if_ignored"): True,
        ("proj/celery.py", "result_expires"): 43200,
        ("proj/celeryconfig.py", "broker_url"): "redis://localhost:6379/0",
        ("proj/celeryconfig.py", "task_serializer"): "json",
    }
    seen = 0
    for f in report.findings:
        key = (f.path, f.subject)
        if f.kind == "setting" and key in values:
            seen += 1
            assert (f.status is not Status.EDIT) == _accepted(f.subject, values[key]), f
    assert seen == len(values)


def test_imports_and_app_calls_follow_the_installed_package() -> None:
    import celeriac

    report = scan(PROJECT)
    by_subject = {f.subject: f for f in report.findings}
    shared = by_subject["from celery import shared_task"]
    assert (shared.status is Status.EDIT) == (not hasattr(celeriac, "shared_task"))
    for method in ("config_from_object", "autodiscover_tasks"):
        f = by_subject[f"app.{method}"]
        assert (f.status is Status.EDIT) == (not hasattr(Celeriac, method))
    backend = by_subject["backend"]
    try:
        Celeriac("x", broker="memory://", backend="redis://localhost:6379/1")
        accepted = True
    except (CeleriacError, TypeError):
        accepted = False
    assert (backend.status is Status.EDIT) == (not accepted)


@pytest.mark.parametrize(
    ("name", "value", "ports"),
    [("task_acks_late", True, True), ("lease_s", -1, False), ("no_such_setting_at_all", 1, False)],
)
def test_check_setting(name: str, value: object, ports: bool) -> None:
    assert (check_setting(name, value)[0] is not Status.EDIT) == ports


def test_task_options_and_imports_are_asked_of_celeriac() -> None:
    assert check_task_option("max_retries", 3)[0] is not Status.EDIT
    assert check_task_option("surely_not_an_option", 1)[0] is Status.EDIT
    assert check_import("celery.exceptions", "SoftTimeLimitExceeded")[0] is not Status.EDIT
    assert check_import("celery.nonexistent_module", "X")[0] is Status.EDIT
    assert check_import("kombu", "Queue")[0] is Status.EDIT


def test_a_project_with_200k_setting_lines_is_read(tmp_path: Path) -> None:
    lines = [f"CELERY_TASK_ACKS_LATE = {i % 2 == 0}" for i in range(200_000)]
    (tmp_path / "settings.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "Procfile").write_text("worker: celery -A proj worker -c 4\n" * 1000)
    report = scan(tmp_path)
    settings = [f for f in report.findings if f.kind == "setting"]
    assert len(settings) == 200_000
    assert settings[-1].line == 200_000
    assert sum(f.subject == "celery worker" for f in report.findings) == 1000


def test_a_missing_path_is_a_usage_error() -> None:
    done = _run("/nonexistent/project")
    assert done.returncode == 2
    assert "does not exist" in done.stderr
