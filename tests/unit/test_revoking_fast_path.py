"""A worker checks revocations at no cost while nothing is revoked, and still honours every revocation
learned after it started: its check reads the mirror's own dict, which is never replaced."""

from __future__ import annotations

import asyncio

from celeriac import Celeriac, TaskState, Worker
from celeriac.broker.revoked import Revocation
from celeriac.execution import Job, Outcome
from celeriac.task import SendOptions

ran: list[int] = []


def _worker() -> tuple[Celeriac, Worker]:
    app = Celeriac("fast", broker="memory://")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        ran.append(x)
        return x + y

    return app, Worker(app, pool="asyncio", concurrency=2, burst=True)


def test_nothing_revoked_means_an_empty_dict_and_no_drop() -> None:
    app, w = _worker()
    assert w.revoking.ids == {} and not w.revoking.ids
    job = w.executor.prepare(app.codec.encode(app.tasks["t.add"].build_message((1, 2), {}, SendOptions())))
    assert isinstance(job, Job) and w.revoking.drop(job) is None


def test_a_revocation_learned_later_is_honoured() -> None:
    app, w = _worker()
    ids = w.revoking.ids
    mirror = w.broker.revocations
    job = w.executor.prepare(app.codec.encode(app.tasks["t.add"].build_message((1, 2), {}, SendOptions())))
    assert isinstance(job, Job)
    mirror.add(Revocation(job.message.id, 1))  # what a fetch or the control loop applies
    mirror.expire(2)  # expiry and bounds change the dict in place
    assert w.revoking.ids is ids and job.message.id in ids
    outcome = w.revoking.drop(job)
    assert isinstance(outcome, Outcome) and outcome.state is TaskState.REVOKED


def test_a_worker_drops_a_task_revoked_after_it_started() -> None:
    app, w = _worker()
    ran.clear()
    t = app.tasks["t.add"]
    keep, drop = t.delay(1, 2), t.delay(5, 6)
    outcomes: list[Outcome] = []
    w.on_outcome = w.settler.on_outcome = outcomes.append
    # revoked after the worker was built (its mirror was empty then): learned like a fetch learns it
    w.broker.revocations.add(Revocation(drop.id, 1))
    asyncio.run(w.run())
    assert ran == [1]
    states = {o.task_id: o.state for o in outcomes}
    assert states[keep.id] is TaskState.SUCCESS and states[drop.id] is TaskState.REVOKED
