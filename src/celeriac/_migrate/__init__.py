"""``celeriac check-celery``: read a Celery project and say what ports as is, what needs an edit (and
which), and what celeriac does differently.

The project is only read, never imported: Python files are parsed (``ast``), command lines are found
in Procfiles, compose files, systemd units, Dockerfiles, shell scripts and supervisor configs. Every
verdict comes from celeriac itself (:mod:`._oracle`): a setting is tried on a real ``Config``, a task
option on a real ``@app.task``, a worker flag on the real ``celeriac worker`` command, an import on
the real package. So the checker never claims more (or less) than the installed celeriac does.
"""

from __future__ import annotations

from ._findings import Finding, Report, Status
from ._scan import scan

__all__ = ["Finding", "Report", "Status", "scan"]
