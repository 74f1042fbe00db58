"""``celeriac control revoke``: Celery's spelling of ``celeriac revoke`` (``celery control revoke``)."""

from __future__ import annotations

import click

from .revoke import revoke


@click.group()
def control() -> None:
    """Task control, as `celery control`: `celeriac control revoke TASK_ID...`."""


control.add_command(revoke)
