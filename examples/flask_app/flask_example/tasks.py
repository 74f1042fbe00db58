"""Tasks of the Flask example: they run inside the Flask app's context (``current_app``, ``g``)."""

from __future__ import annotations

import os

from flask import current_app, g

from celeriac import shared_task


@shared_task(ignore_result=False)
def add_together(a: int, b: int) -> int:
    return a + b


@shared_task(ignore_result=False)
def greet(name: str) -> dict[str, object]:
    # `g` is per app context: a context left over from another task would show its name here
    seen_before = getattr(g, "name", None)
    g.name = name
    return {
        "text": f"{current_app.config['GREETING']}, {name}",
        "app": current_app.name,
        "seen_before": seen_before,
        "pid": os.getpid(),
    }
