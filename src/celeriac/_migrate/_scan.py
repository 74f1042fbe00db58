"""Walk a project folder and collect :class:`Finding` s: Python files through ``ast``
(:mod:`._python`), everything that may hold a command line through :mod:`._textfiles`."""

from __future__ import annotations

import os
from pathlib import Path

from ._findings import Finding, Report
from ._python import scan_python
from ._textfiles import is_command_file, scan_text

#: folders never read (virtual environments, caches, VCS metadata, build output)
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        ".tox",
        ".nox",
        "node_modules",
        "__pycache__",
        "site-packages",
        "build",
        "dist",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
    }
)
#: larger files are not read (a generated or vendored file, not project code); they are listed as skipped
MAX_FILE_BYTES = 16 << 20


def scan(root: str | os.PathLike[str]) -> Report:
    """Read every Python file and command-line file under ``root`` (a folder or one file)."""
    base = Path(root)
    if not base.exists():
        raise FileNotFoundError(f"{base}: no such file or folder")
    files = [base] if base.is_file() else sorted(_walk(base))
    report = Report(root=str(base))
    top = base.parent if base.is_file() else base
    config_modules: set[str] = set()
    parsed: list[tuple[Path, str, list[Finding]]] = []
    for path in files:
        rel = path.relative_to(top).as_posix()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                report.skipped.append((rel, f"larger than {MAX_FILE_BYTES >> 20} MiB"))
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            report.skipped.append((rel, exc.strerror or type(exc).__name__))
            continue
        if path.suffix == ".py":
            found, referenced = scan_python(rel, text)
            config_modules |= referenced
            parsed.append((path, rel, found))
        elif is_command_file(path):
            parsed.append((path, rel, scan_text(rel, text)))
        else:
            continue
        report.files.append(rel)
    # a module named by config_from_object("pkg.celeryconfig") holds Celery settings as plain names
    for path, rel, found in parsed:
        if path.suffix == ".py" and _module_name(rel) in config_modules | {"celeryconfig"}:
            found[:] = scan_python(rel, path.read_text(encoding="utf-8", errors="replace"), settings=True)[0]
        report.findings.extend(found)
    report.findings.sort(key=lambda f: (f.path, f.line))
    return report


def _walk(base: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        out.extend(Path(dirpath, name) for name in filenames)
    return out


def _module_name(rel: str) -> str:
    """``proj/celeryconfig.py`` -> ``celeryconfig`` and ``proj.celeryconfig`` both match a reference."""
    return rel.removesuffix(".py").replace("/", ".").rsplit(".", 1)[-1]
