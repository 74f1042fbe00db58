"""Result backends: where task outcomes are stored when a caller asked for them.

The backends load on first use: importing the Redis backend imports redis-py (megabytes with
asyncio), which processes that never talk to Redis (the process pool's children) do without.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ResultBackend

if TYPE_CHECKING:
    from .memory import MemoryResultBackend
    from .redis import RedisResultBackend

_LAZY = {"MemoryResultBackend": ".memory", "RedisResultBackend": ".redis"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MemoryResultBackend",
    "RedisResultBackend",
    "ResultBackend",
]
