"""``celeriac check-celery PATH``: what of a Celery project ports as is, what needs an edit, and what
celeriac does differently. The project is read, never imported or changed."""

from __future__ import annotations

import json
import sys

import click

from .._migrate import Report, Status, scan
from ._common import console

_TITLES = {
    Status.EDIT: "Needs an edit",
    Status.DIFFERS: "Works, but differently",
    Status.PORTS: "Ports as is (once `celery` reads `celeriac`)",
}


@click.command("check-celery")
@click.argument("path", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON document: summary and every finding.")
@click.option(
    "--only",
    type=click.Choice([s.value for s in Status]),
    multiple=True,
    help="Show only these verdicts (repeatable).",
)
def check_celery(path: str, as_json: bool, only: tuple[str, ...]) -> None:
    """Scan the Celery project at PATH: imports, settings, task options, app calls, and the `celery`
    command lines in Procfiles, compose files, systemd units, Dockerfiles and scripts.

    Every verdict is asked of the installed celeriac itself. Exit status 0 when nothing needs an edit,
    1 when something does (so it can gate a CI job).
    """
    report = scan(path)
    shown = [Status(s) for s in only] if only else [Status.EDIT, Status.DIFFERS, Status.PORTS]
    if as_json:
        data = report.as_dict()
        data["findings"] = [f for f in data["findings"] if Status(f["status"]) in shown]
        click.echo(json.dumps(data, indent=2))
    else:
        _print(report, shown)
    if report.by_status(Status.EDIT):
        sys.exit(1)


def _print(report: Report, shown: list[Status]) -> None:
    out = console()
    # piped output: no wrapping, so every finding stays on one line whole (grep-able)
    width = None if out.is_terminal else 10_000
    for status in shown:
        found = report.by_status(status)
        if not found:
            continue
        out.print(f"\n{_TITLES[status]} ({len(found)})", style="bold", markup=False)
        for f in found:
            text = f"  {f.path}:{f.line}: {f.kind} {f.subject}"
            if f.edit:
                text += f" -> {f.edit}"
            if f.note:
                text += f" ({f.note})"
            out.print(text, markup=False, highlight=False, soft_wrap=True, width=width)
    for path, reason in report.skipped:
        out.print(f"not read: {path} ({reason})", markup=False, soft_wrap=True)
    s = report.summary()
    out.print(
        f"\n{s['files']} files read: {s['edit']} need an edit, {s['differs']} work differently, "
        f"{s['ports']} port as is",
        markup=False,
    )
