"""The entry points signatures reach through their app (``app.workflow``): send, or run eagerly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .eager import apply_eager
from .send import send as send_canvas

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..canvas import Signature


def send(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """``sig.apply_async()``: sent to Redis, or run inline under ``task_always_eager``."""
    if app.conf.task_always_eager:
        return apply_eager(app, sig, args, kwargs, options)
    return send_canvas(app, sig, args, kwargs, options)
