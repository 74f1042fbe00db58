"""Celery command lines (``celery -A proj worker -l info -Q a,b ...``) checked against the real
``celeriac`` click commands: every subcommand and every flag is looked up in them, and a flag's value
is converted by the flag's own type, so the verdict is exactly what ``celeriac`` would do."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ._findings import Status
from ._oracle import DIFFERENCES, Verdict, with_note

#: Celery commands whose celeriac counterpart has another name
RENAMED_COMMANDS = {"flower": "dashboard"}


@dataclass(frozen=True)
class Part:
    """One checked piece of a command line: the subcommand, or one flag (with its value)."""

    kind: str  # "command" or "flag"
    subject: str
    verdict: Verdict


def _group() -> click.Group:
    from ..cli._group import main

    return main


def _options(command: click.Command) -> dict[str, click.Option]:
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                found[opt] = param
    return found


def _split(token: str, options: dict[str, click.Option]) -> tuple[str, str | None]:
    """``--x=y`` -> (``--x``, ``y``); ``-c4`` -> (``-c``, ``4``) when ``-c`` takes a value."""
    if token.startswith("--") and "=" in token:
        name, value = token.split("=", 1)
        return name, value
    if not token.startswith("--") and len(token) > 2:
        option = options.get(token[:2])
        if option is not None and not option.is_flag:
            return token[:2], token[2:]
    return token, None


def _check_value(option: click.Option, value: str) -> str:
    try:
        option.type.convert(value, option, None)
    except click.BadParameter as exc:
        return exc.format_message()
    return ""


def check_command_line(argv: list[str]) -> list[Part]:
    """Check ``argv``, the words after ``celery`` (``["-A", "proj", "worker", "-l", "info"]``)."""
    group: click.Command = _group()
    path = "celery"
    parts: list[Part] = []
    i = 0
    ctx = click.Context(_group())
    while i < len(argv):
        token = argv[i]
        options = _options(group)
        if token.startswith("-") and token != "-":
            name, value = _split(token, options)
            option = options.get(name)
            if option is None:
                where = f"celeriac{path[len('celery') :]}"
                note = f"`{where}` has no {name} option"
                parts.append(Part("flag", name, (Status.EDIT, f"remove {name}", note)))
                # an unknown flag's value cannot be told from the next word: assume none unless attached
                i += 1
                continue
            if not option.is_flag and not option.count and value is None:
                value = argv[i + 1] if i + 1 < len(argv) else None
                i += 1
            problem = _check_value(option, value) if value is not None else ""
            subject = f"{name} {value}" if value is not None else name
            if problem:
                parts.append(Part("flag", subject, (Status.EDIT, f"change the value of {name}", problem)))
            else:
                verdict = with_note(Status.PORTS, "", name)
                parts.append(Part("flag", subject, verdict))
            i += 1
            continue
        if isinstance(group, click.Group):
            sub = group.get_command(ctx, token)
            subject = f"{path} {token}"
            if sub is None:
                renamed = RENAMED_COMMANDS.get(token)
                if renamed and group.get_command(ctx, renamed) is not None:
                    verdict = (Status.EDIT, f"celeriac {renamed}", DIFFERENCES.get(subject, ""))
                else:
                    verdict = (Status.EDIT, "", f"celeriac has no `{token}` command")
                parts.append(Part("command", subject, verdict))
                return parts  # the rest belongs to a command celeriac does not have
            parts.append(Part("command", subject, with_note(Status.PORTS, "", subject)))
            group, path = sub, subject
            i += 1
            continue
        i += 1  # a positional argument (a queue name, a task name)
    return parts
