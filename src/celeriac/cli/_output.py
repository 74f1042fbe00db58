"""How listing commands (``status``, ``dlq list``) print: a table for a person, lines for a program.

A rich table is sized for the terminal; written to a pipe or a file it is sized for 80 columns and
cuts or drops columns, which is useless to ``grep`` or a script. So the output depends on where it
goes:

* a terminal: a table (``--table`` forces it, e.g. ``celeriac status --table | less -S``);
* anything else: tab-separated lines, one record per line, a header line first, every field in full.
  A tab, a newline or a backslash inside a value is written as ``\\t``, ``\\n`` or ``\\\\``, so a record
  stays on one line. Notes for a person (titles, "no live workers") go to stderr, so stdout holds
  only the records;
* ``--json``: JSON (each command documents whether it prints JSON lines or one document).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
Mode = Literal["table", "plain", "json"]

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def listing_options(func: F) -> F:
    """Add ``--json`` and ``--table`` to a listing command (values: ``as_json``, ``as_table``)."""
    func = click.option(
        "--table",
        "as_table",
        is_flag=True,
        show_envvar=True,
        help="Print a table even when stdout is not a terminal.",
    )(func)
    func = click.option(
        "--json",
        "as_json",
        is_flag=True,
        show_envvar=True,
        help="Print JSON (see the command's description).",
    )(func)
    return func


def output_mode(as_json: bool, as_table: bool) -> Mode:
    """``json`` when asked, else ``table`` for a terminal (or ``--table``), else ``plain``."""
    if as_json and as_table:
        raise click.UsageError("give at most one of --json and --table")
    if as_json:
        return "json"
    if as_table or sys.stdout.isatty():  # CliRunner replaces sys.stdout too
        return "table"
    return "plain"


def tsv_line(values: Iterable[object]) -> str:
    """One record as a tab-separated line (tabs, newlines and backslashes in values escaped)."""
    return "\t".join(str(v).translate(_ESCAPES) for v in values)


def print_tsv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A header line and one line per row on stdout."""
    click.echo(tsv_line(header))
    for row in rows:
        click.echo(tsv_line(row))


def print_json(value: Any) -> None:
    """One JSON value on one line of stdout (non-ASCII kept: JSON is UTF-8)."""
    click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def note(text: str) -> None:
    """A line for a person: on stderr when stdout carries records for a program."""
    click.echo(text, err=True)


__all__ = ["Mode", "listing_options", "note", "output_mode", "print_json", "print_tsv", "tsv_line"]
