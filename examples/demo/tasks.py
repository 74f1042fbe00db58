"""The demo's tasks: a Celery tasks module ported to celeriac by changing the import and the app line.

The broker URL comes from ``CELERIAC_BROKER_URL`` (the demo runner sets it to its private Redis).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from celeriac import Celeriac, Task

# Celery: app = Celery("demo", broker=...)
app = Celeriac("demo", task_default_queue="demo")


@app.task(ignore_result=False)  # celeriac ignores results unless asked (Celery stores them by default)
def add(x: int, y: int) -> int:
    return x + y


@app.task(ignore_result=False)
def square(n: int) -> int:
    return n * n


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    max_retries=5,
    retry_backoff=0.25,  # 0.25 s, then 0.5 s, 1 s, ... (capped by retry_backoff_max)
    retry_jitter=False,  # keep the demo's timing predictable; jitter is on by default
    ignore_result=False,
)
def flaky(self: Task[Any, Any], name: str) -> dict[str, object]:
    """Fails on its first two attempts (as a flaky upstream would), then succeeds."""
    attempt = self.request.retries + 1
    if attempt < 3:
        raise ConnectionError(f"{name}: upstream unavailable (attempt {attempt})")
    return {"name": name, "attempts": attempt}


@app.task(ignore_result=False)
def stamp(label: str) -> float:
    """Returns the wall-clock time it ran at (the demo measures how late a delayed task starts)."""
    return time.time()


@app.task(queue="demo.io", ignore_result=False)
async def fetch_page(n: int) -> str:
    """An async task: many of them wait concurrently on the worker's event loop."""
    await asyncio.sleep(0.3)
    return f"page-{n}"


@app.task(ignore_result=False)
def parse(text: str) -> int:
    """Fails on bad input: ``get()`` re-raises the task's own exception type, with the remote traceback."""
    return int(text)
