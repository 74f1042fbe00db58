"""The worker builds each task's :class:`~celeriac.context.Request` positionally (it runs for every
task): every field must land where its name says, whatever order the dataclass declares them in."""

from __future__ import annotations

from celeriac import Celeriac
from celeriac._redis.keys import LEVEL_SEP
from celeriac.context import Request
from celeriac.execution import Execution, Job
from celeriac.message import Message


def test_prepare_fills_every_request_field_by_name() -> None:
    app = Celeriac("rq", broker="memory://", result_backend="disabled", from_env=False)

    @app.task(name="rq.add")
    def add(x: int, y: int, z: int = 0) -> int:
        return x + y + z

    message = Message(
        "0f5b6c1e-1f7a-4a2b-9c3d-123456789abc",
        "rq.add",
        (1, 2),
        {"z": 3},
        retries=2,
        eta_ms=4_000_000_000_000,
        expires_ms=4_100_000_000_000,
        max_retries=7,
        root_id="root-1",
        parent_id="parent-1",
    )
    data = app.codec.encode(message)
    prepared = Execution(app).prepare(data, queue=f"emails{LEVEL_SEP}3", delivery=4, eager=True)
    assert isinstance(prepared, Job)
    assert prepared.request == Request(
        id="0f5b6c1e-1f7a-4a2b-9c3d-123456789abc",
        task="rq.add",
        args=(1, 2),
        kwargs={"z": 3},
        retries=2,
        eta=4_000_000_000.0,
        expires=4_100_000_000.0,
        delivery=4,
        queue="emails",  # a priority level's queue: the queue itself
        is_eager=True,
        root_id="root-1",
        parent_id="parent-1",
        traceparent=None,
        max_retries=7,
    )
    # a task sent on its own is its own root
    plain = Execution(app).prepare(app.codec.encode(Message("t-2", "rq.add", (1, 2))), queue="default")
    assert isinstance(plain, Job)
    assert (plain.request.root_id, plain.request.queue, plain.request.is_eager) == ("t-2", "default", False)
    assert (plain.request.eta, plain.request.expires, plain.request.max_retries) == (None, None, None)
