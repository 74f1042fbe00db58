"""pytest fixtures for celeriac apps (registered as the ``celeriac`` pytest11 entry point)."""

from __future__ import annotations
