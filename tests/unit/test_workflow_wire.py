"""The rest of a chain on the wire: every hop decodes and encodes it again, so a task step travels
without the fields it leaves at their defaults, and reads back as the same signature."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from celeriac import Celeriac, chain, group, maybe_signature
from celeriac.workflow.build import _prepare, plan_of
from celeriac.workflow.plan import workflow_of


@pytest.fixture
def app() -> Iterator[Celeriac]:
    app = Celeriac("wire", broker="memory://")
    yield app
    app.close()


def test_later_chain_steps_travel_without_default_fields_and_read_back_whole(app: Celeriac) -> None:
    @app.task(name="t.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    sig, _ = _prepare(
        app, chain(add.s(1, 1), add.s(2), add.si(3, 3), add.s(y=4), group(add.s(5), add.s(6))), (), {}, {}
    )
    (send,) = plan_of(app, sig).sends
    w = workflow_of(app.codec.decode(send.data))
    assert w is not None
    rest = w["c"]
    assert set(rest[0]) == {"task", "args", "options"}  # no kwargs, subtask_type, immutable
    assert set(rest[1]) == {"task", "args", "options", "immutable"}  # immutable=True is kept
    assert set(rest[2]) == {"task", "kwargs", "options"}
    assert rest[3]["subtask_type"] == "group"  # primitives travel whole
    frozen = sig.tasks[1:]
    for wire, original in zip(rest, frozen):
        back = maybe_signature(wire, app=app)
        assert type(back) is type(original)
        if back.subtask_type is None:
            assert dict(back) == dict(original)
