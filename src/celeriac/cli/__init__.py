"""The ``celeriac`` command line (the click group is in ``_group.py``).

This package imports nothing heavy: :func:`run`, the console entry point, first applies gevent's
monkey-patching when the command line asks for ``-P gevent`` (``celeriac/gevent_patch.py``), and only
then imports click, the subcommand and the app. ``main`` (the click group) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._group import main


def run() -> None:
    """The ``celeriac`` command (also ``python -m celeriac`` and ``python -m celeriac.cli``)."""
    from ..gevent_patch import patch_if_requested

    patch_if_requested()
    from . import _run_worker

    _run_worker.REEXEC = True  # `celeriac worker` runs its worker in a lean image, without click
    from ._group import main

    main(prog_name="celeriac")


def __getattr__(name: str) -> Any:
    if name == "main":
        from ._group import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["main", "run"]
