"""Checked by mypy (tests/unit/test_typing.py runs it with --strict --warn-unused-ignores): every
``type: ignore[...]`` below is an error mypy must report, and ``assert_type`` pins what it infers."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from celeriac import AsyncResult, Celeriac, Task

app = Celeriac("typed", broker="memory://", from_env=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="io")
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(bind=True, max_retries=2)
def bound(self: Task[Any, Any], n: int) -> str:
    return str(n)


assert_type(add.delay(1, 2), AsyncResult[int])
assert_type(add.delay(1, 2).get(timeout=1), int)
assert_type(fetch.delay("u").get(), bytes)
assert_type(bound.delay(3).get(), str)
assert_type(add(1, 2), int)  # called here, now
# an async task called here, now, gives its coroutine
coroutine = assert_type(fetch("u"), Coroutine[Any, Any, bytes])
coroutine.close()

add.delay("x", 2)  # type: ignore[arg-type]
add.delay(1)  # type: ignore[call-arg]
fetch.delay(1)  # type: ignore[arg-type]
bound.delay("3")  # type: ignore[arg-type]
