"""The monitoring Lua script, loaded like the broker's (called by SHA, loaded again on NOSCRIPT)."""

from __future__ import annotations

import hashlib
from importlib import resources

from ..broker.scripts import Script


def _named(name: str) -> Script:
    text = resources.files("celeriac.monitor").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest())


RECORD = _named("record")
SERIES = _named("series")
