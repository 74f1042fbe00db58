"""GeventPool: a greenlet it kills has ended when the kill returns, before the outcome is recorded."""

from __future__ import annotations

import asyncio

import pytest

gevent = pytest.importorskip("gevent")
from gevent.event import Event  # noqa: E402

from celeriac.worker.greenlets import GeventPool, _Run  # noqa: E402
from celeriac.worker.limits import NO_LIMITS  # noqa: E402


def test_a_killed_greenlet_has_ended_when_the_kill_returns() -> None:
    """The race CI hit (revoke terminate): the kill was only queued on the hub, the worker recorded
    REVOKED, the test pushed the task's "go", and the hub resumed the greenlet for that read before
    delivering the kill, so the "terminated" task ran on to its side effect."""
    pool = GeventPool()
    loop = asyncio.new_event_loop()
    try:
        run = _Run(loop.create_future(), NO_LIMITS, "victim")
        go, after = Event(), []

        def task() -> None:
            go.wait()
            after.append("ran on")  # the side effect a terminated task must not reach

        run.greenlet = gevent.spawn(task)
        pool._running.add(run)
        gevent.sleep(0)  # the greenlet starts and waits
        pool._kill(run)
        assert run.greenlet.dead  # not merely queued for the hub's next turn
        go.set()  # what the outside world does once it sees REVOKED
        gevent.sleep(0.01)
        assert after == []
        assert pool.abandoned == 1  # until its run hands back (here: never, the test made it by hand)
    finally:
        loop.close()
