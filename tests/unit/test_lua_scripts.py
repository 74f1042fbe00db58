"""Every Redis script is a .lua file whose header documents each key it touches, all passed in KEYS."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from celeriac.broker.scripts import source

LUA_DIR = resources.files("celeriac.broker").joinpath("lua")
NAMES = sorted(p.name[:-4] for p in LUA_DIR.iterdir() if p.name.endswith(".lua"))


def test_scripts_exist() -> None:
    assert {"settle", "reclaim", "extend", "promote", "enqueue_delayed", "release"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_header_documents_every_key(name: str) -> None:
    text = source(name)
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    used = set(
        re.findall(
            r"KEYS\[(\d+)\]", "\n".join(line for line in text.splitlines() if not line.startswith("--"))
        )
    )
    assert used, f"{name}.lua touches no KEYS"
    for n in used:
        assert f"KEYS[{n}]" in header, f"{name}.lua uses KEYS[{n}] without documenting it"


@pytest.mark.parametrize("name", NAMES)
def test_no_key_is_built_inside_the_script(name: str) -> None:
    body = "\n".join(line for line in source(name).splitlines() if not line.startswith("--"))
    # a key name built from strings inside Lua would break Redis Cluster routing
    assert "celeriac:" not in body
    for command, rest in re.findall(r"redis\.call\('(\w+)',?\s*([^\)]*)", body):
        args = [a.strip() for a in rest.split(",")]
        if command in {"TIME", "PUBLISH"}:  # no key; PUBLISH takes a channel
            continue
        if command in {"XINFO", "XGROUP"}:  # a subcommand comes before the key
            args = args[1:]
        assert args[0].startswith("KEYS["), f"{name}.lua: {command} on {args[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_unpack_is_always_the_last_argument(name: str) -> None:
    # Lua passes only the first value of `unpack(t)` when another argument follows it: extend.lua once
    # renewed one lease per call that way, and the other running tasks were reclaimed and run again
    body = "\n".join(line for line in source(name).splitlines() if not line.startswith("--"))
    assert not re.search(r"unpack\([^()]*\)\s*,", body), f"{name}.lua: unpack(...) followed by an argument"
