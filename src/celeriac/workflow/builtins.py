"""The tasks every app registers for workflows: ``celeriac.map``, ``celeriac.starmap``,
``celeriac.accumulate`` (a group's values as one value) and ``celeriac.run_canvas`` (a chord body
that fans out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _registry
from ..exceptions import Replaced

if TYPE_CHECKING:
    from ..app import Celeriac


def register_builtins(app: Celeriac) -> None:
    """``celeriac.map``, ``celeriac.starmap``, ``celeriac.accumulate``, ``celeriac.run_canvas``."""
    _registry.last_app[:] = [app]

    def _map(task: str, it: Sequence[Any]) -> list[Any]:
        fn = app.tasks[task]
        return [fn(item) for item in it]

    def _starmap(task: str, it: Sequence[Sequence[Any]]) -> list[Any]:
        fn = app.tasks[task]
        return [fn(*item) for item in it]

    def _accumulate(values: Any = None, *more: Any) -> Any:
        return values

    def _run_canvas(self: Any, *values: Any, sig: Mapping[str, Any]) -> None:
        # imported here: every app registers these tasks, and the workflow engine (outcome, build,
        # plan) and canvas should load only in a process that runs a workflow
        from ..canvas import signature
        from .outcome import replace_in_task

        replace_in_task(app, self.request, signature(sig, app=app), keep_ids=True, args=tuple(values))
        raise Replaced(self.request.id)

    for name, fn, bind in (
        ("celeriac.map", _map, False),
        ("celeriac.starmap", _starmap, False),
        ("celeriac.accumulate", _accumulate, False),
        ("celeriac.run_canvas", _run_canvas, True),
    ):
        if name not in app.tasks:
            app.task(name=name, bind=bind, ignore_result=False, typing=False)(fn)
