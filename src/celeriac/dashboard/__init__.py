"""The celeriac dashboard (extra ``celeriac[dashboard]``): pages, a JSON API and ``/metrics``.

``celeriac dashboard -A mod:app`` serves it; :func:`create_app` returns the ASGI app to mount inside
another (FastAPI, Starlette, Django ASGI). See docs/monitoring.md.
"""

from __future__ import annotations

from .app import create_app
from .policy import OpenPolicy, Policy

__all__ = ["OpenPolicy", "Policy", "create_app"]
