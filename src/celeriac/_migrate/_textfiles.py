"""Command lines in the files that start workers: Procfiles, compose files, systemd units, Dockerfiles,
shell scripts, supervisor and circus configs, Makefiles. Each ``celery ...`` invocation found is
checked word by word by :mod:`._commands`."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ._commands import check_command_line
from ._findings import Finding

_NAMES = re.compile(
    r"^(Procfile.*|Dockerfile.*|Containerfile|Makefile|.*\.(ya?ml|service|sh|bash|conf|ini|cfg|env))$"
)
# `celery` as a word of its own (a path to it, or `python -m celery`), not inside a module name
_CELERY = re.compile(r"""(?:^|(?<=[\s"'\[=,;&|(]))(?:[\w./-]*/)?celery(?=["'\s,\]]|$)""")
_STOP = frozenset({"&&", "||", ";", "|", "&", ">", ">>", "2>&1", "<"})


def is_command_file(path: Path) -> bool:
    """Whether ``path`` may start a worker (by its name)."""
    return bool(_NAMES.match(path.name))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, each with the number of its first line."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _words(rest: str) -> list[str]:
    """The words after ``celery``: a JSON/YAML list (``"-A", "proj", ...]``) or a shell line."""
    stripped = rest.strip()
    if stripped.startswith(('",', "',")) or stripped.startswith(","):
        try:
            items = json.loads("[" + stripped.lstrip("\"'").lstrip(",").split("]")[0] + "]")
            return [str(i) for i in items]
        except ValueError:
            pass
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        words = rest.split()
    out = []
    for word in words:
        if word in _STOP or word.startswith((">", "2>")):
            break
        out.append(word.rstrip(";"))
    return out


def scan_text(path: str, text: str) -> list[Finding]:
    """Findings for every ``celery`` command line in one file."""
    findings: list[Finding] = []
    for number, line in _logical_lines(text):
        if line.lstrip().startswith("#"):
            continue
        for match in _CELERY.finditer(line):
            words = _words(line[match.end() :])
            if not words or not (words[0].startswith("-") or words[0].isalpha()):
                continue
            for part in check_command_line(words):
                status, edit, note = part.verdict
                findings.append(Finding(path, number, part.kind, part.subject, status, edit, note))
    return findings
