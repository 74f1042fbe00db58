"""Workflows in eager mode (``task_always_eager``, ``sig.apply()``): the same plans, run inline
through the same execution path as a worker (messages serialized), with chord state in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..eager import run_job
from ..execution import Execution, Outcome
from ..record import ResultRecord
from ..result import GroupResult
from ..states import TaskState
from .build import _prepare, plan_of
from .outcome import after_outcome, chord_failed, chord_values, with_values
from .plan import EAGER, Plan, Send, workflow_of

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..canvas import Signature


class _EagerRunner:
    """Runs a plan inline, through the same execution path as a worker (messages serialized), with
    the chord state and results in memory."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        self.queue: list[Send] = []
        self.chords: dict[str, dict[str, Any]] = {}
        self.records: dict[str, ResultRecord] = {}
        self.first_error: BaseException | None = None

    def apply(self, plan: Plan) -> None:
        for c in plan.chords:
            self.chords.setdefault(
                c.chord_id, {"n": c.size, "b": c.body, "k": c.needs_values, "r": {}, "f": None, "x": False}
            )
        self.queue.extend(plan.sends)
        for s in plan.stores:
            self.records[s.task_id] = self.app.codec.decode_result(s.task_id, s.payload)
        for p in plan.parts:
            state = self.chords.get(p.chord_id)
            if state is None or state["x"]:
                continue
            if p.ok:
                state["r"].setdefault(p.index, p.payload)
            elif p.index not in state["r"] and state["f"] is None:
                state["f"] = p.payload
            if state["f"] is not None:
                self.chords.pop(p.chord_id)
                self.apply(chord_failed(self.app, p.queue, p.chord_id, state["b"], state["f"]))
            elif len(state["r"]) >= state["n"]:
                state["x"] = True
                self.queue.append(Send(p.queue, "", state["b"]))
        for _queue, chord_id in plan.forget:
            state = self.chords.get(chord_id)
            if state is not None and (state["x"] or state["f"] is not None):
                self.chords.pop(chord_id, None)

    def run(self) -> None:
        executor = Execution(self.app)
        token = EAGER.set(self)
        try:
            while self.queue:
                item = self.queue.pop(0)
                data = item.data
                while True:
                    prepared = executor.prepare(data, queue=item.queue, eager=True)
                    if isinstance(prepared, Outcome):
                        out = prepared
                        message = self.app.codec.decode(data) if prepared.task_id else None
                        break
                    message = prepared.message
                    w = workflow_of(message)
                    if w is not None and isinstance(w.get("r"), str):
                        prepared = self._with_values(prepared, w["r"])
                    out = run_job(executor, prepared)
                    if out.kind != "retry":
                        break
                    data = out.retry_data
                if out.record is not None:
                    self.records[out.record.task_id] = out.record
                elif out.state is TaskState.SUCCESS and out.task_id:
                    self.records[out.task_id] = ResultRecord(out.task_id, TaskState.SUCCESS, out.value)
                if out.exc is not None and out.state is not None and self.first_error is None:
                    self.first_error = out.exc
                if message is not None:
                    self.apply(after_outcome(self.app, message, item.queue, out))
        finally:
            EAGER.reset(token)

    def _with_values(self, job: Any, chord_id: str) -> Any:
        state = self.chords.get(chord_id)
        values = []
        if state is not None:
            parts = [state["r"][i] for i in sorted(state["r"])]
            values = chord_values(self.app, chord_id, len(parts), b"".join(parts))
            self.chords.pop(chord_id, None)
        return with_values(job, values)

    def fill(self, res: Any) -> None:
        """Give every result handle of the canvas its recorded outcome."""
        if isinstance(res, GroupResult):
            for r in res.results:
                self.fill(r)
        elif res is not None:
            record = self.records.get(res.id)
            if record is not None:
                res._record = record
        if res is not None and res.parent is not None:
            self.fill(res.parent)


def apply_eager(
    app: Celeriac, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """Run a canvas inline (``sig.apply()`` / ``task_always_eager``)."""
    frozen, res = _prepare(app, sig, args, kwargs, options)
    runner = EAGER.get()
    if runner is not None:  # a task running eagerly sends a canvas: it joins the same run
        runner.apply(plan_of(app, frozen))
        runner.run()
        runner.fill(res)
        return res
    runner = _EagerRunner(app)
    runner.apply(plan_of(app, frozen))
    runner.run()
    runner.fill(res)
    if runner.first_error is not None and app.conf.task_eager_propagates:
        raise runner.first_error
    return res
