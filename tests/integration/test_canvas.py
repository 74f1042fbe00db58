"""Workflows on a real redis-server: every canvas API line of issue 11, and each Celery canvas bug on
Redis as a regression test named after it (test_celery_NNNN_...)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import redis

from celeriac import (
    AsyncResult,
    Celeriac,
    ChordError,
    GroupResult,
    Signature,
    TaskState,
    chain,
    chord,
    group,
    maybe_signature,
    signature,
)
from celeriac.testing import ThreadWorker

pytestmark = pytest.mark.redis

T = 20  # seconds any get() may wait


class Boom(Exception):
    pass


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("wf", broker=redis_url, lease_s=2.0)
    yield app
    app.close()


@pytest.fixture
def t(app: Celeriac, redis_url: str) -> SimpleNamespace:
    """The tasks of these tests; runs are recorded in Redis (``runs:<name>`` lists)."""
    rec = redis.Redis.from_url(redis_url)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task
    def identity(x: Any) -> Any:
        return x

    @app.task
    def tsum(xs: list[int]) -> int:
        rec.rpush("runs:tsum", json.dumps(xs))
        return sum(xs)

    @app.task
    def add_to_all(xs: list[Any], y: Any) -> list[Any]:
        return [x + y for x in xs]

    @app.task
    def fail(*args: Any) -> None:
        raise Boom("expected")

    @app.task(ignore_result=False)  # sent alone below: a plain task stores a result only when asked
    def subtract(x: int, y: int) -> int:
        return x - y

    @app.task
    def sleepy(x: int, seconds: float) -> int:
        time.sleep(seconds)
        return x

    @app.task
    def errback(task_id: str) -> None:
        rec.rpush("runs:errback", task_id)

    @app.task
    def callback(value: Any) -> None:
        rec.rpush("runs:callback", json.dumps(value))

    @app.task
    def body(values: list[Any]) -> list[Any]:
        rec.rpush("runs:body", json.dumps(values))
        return values

    @app.task(bind=True)
    def ids(self: Any, i: int) -> list[Any]:
        return [
            i,
            self.request.root_id,
            self.request.parent_id,
            self.request.group_id,
            self.request.group_index,
        ]

    @app.task(bind=True)
    def replacer(self: Any, x: int) -> None:
        self.replace(add.s(x, 100) | mul.s(2))

    @app.task(bind=True)
    def replace_with_group(self: Any, n: int) -> None:
        self.replace(group(identity.si(i) for i in range(n)))

    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("app", "redis_url", "rec")})


@pytest.fixture
def worker(app: Celeriac, thread_worker: Any, t: SimpleNamespace) -> Any:
    return thread_worker(app, concurrency=8, pool="threads")


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def runs(r: redis.Redis, name: str) -> list[Any]:
    return [json.loads(x) if name != "errback" else x.decode() for x in r.lrange(f"runs:{name}", 0, -1)]


def chord_keys(r: redis.Redis) -> list[bytes]:
    return list(r.scan_iter("*:chord:*"))


# ---- signatures --------------------------------------------------------------------------------------
def test_signature_is_a_plain_dict_that_survives_json_and_msgpack(app: Celeriac, t: SimpleNamespace) -> None:
    sig = t.add.s(2, 2).set(countdown=1)
    assert dict(sig) == {
        "task": t.add.name,
        "args": (2, 2),
        "kwargs": {},
        "options": {"countdown": 1},
        "subtask_type": None,
        "immutable": False,
    }
    for data in (json.loads(json.dumps(sig)), msgpack.unpackb(msgpack.packb(sig), raw=False)):
        back = signature(data, app=app)
        assert back == {**sig, "args": (2, 2)} and back.type is t.add
        assert maybe_signature(data, app=app) == back
    canvas = t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s()
    for data in (json.loads(json.dumps(canvas)), msgpack.unpackb(msgpack.packb(canvas), raw=False)):
        back = signature(data, app=app)
        assert isinstance(back, chain) and isinstance(back.tasks[1], chord)
        assert back.apply().get() == 7
    assert t.add.si(1, 2).immutable and not t.add.s(1, 2).immutable
    assert t.add.signature((1,), {"y": 2}, queue="q").options == {"queue": "q"}
    assert maybe_signature(None) is None
    assert Signature(t.add.name, (1, 2), app=app).type is t.add


def test_partial_args_are_prepended_and_immutable_ignores_them(
    app: Celeriac, t: SimpleNamespace, worker: Any
) -> None:
    assert t.subtract.s(10).delay(30).get(timeout=T) == 20  # subtract(30, 10)
    assert t.subtract.s(10).apply_async((30,)).get(timeout=T) == 20
    assert t.subtract.si(10, 3).delay(30).get(timeout=T) == 7
    assert t.subtract.s(y=1).apply_async((5,)).get(timeout=T) == 4
    assert t.subtract.s(10)(30) == 20  # inline call
    assert t.subtract.s(10).apply((30,)).get() == 20  # eager
    clone = t.subtract.s(10).clone((30,))
    assert clone.args == (30, 10)
    assert t.subtract.s(10).set(queue="q").options["queue"] == "q"


# ---- chains ---------------------------------------------------------------------------------------
def test_chain_returns_the_last_result_with_parents(t: SimpleNamespace, worker: Any) -> None:
    res = (t.add.s(4, 4) | t.add.s(8) | t.add.s(16)).delay()
    assert res.get(timeout=T) == 32
    assert res.parent.get(timeout=T) == 16 and res.parent.parent.get(timeout=T) == 8
    assert res.parent.parent.parent is None
    assert chain(t.add.s(3, 4))().get(timeout=T) == 7
    assert chain([chain(t.identity.s(42))]).delay().get(timeout=T) == 42
    assert chain(t.add.s(1, 1), t.mul.si(3, 3)).delay().get(timeout=T) == 9


def test_a_chain_goes_on_after_the_scripts_were_flushed(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    assert (t.add.s(1, 1) | t.add.s(1)).delay().get(timeout=T) == 3
    r.script_flush()  # as after a restart or failover: a worker's next-step dispatch answers NOSCRIPT
    assert (t.add.s(1, 1) | t.add.s(1) | t.add.s(1)).delay().get(timeout=T) == 4


def test_a_step_whose_successors_are_being_sent_is_not_an_orphan(t: SimpleNamespace, worker: Any) -> None:
    """Its run ended and its outcome is not with the settler yet: the lease loop must neither hand it
    back (it would run again) nor stop renewing it while the next step is dispatched."""
    w = worker.worker
    hook = w.workflow_hook
    orphans_seen: list[list[str]] = []
    original = hook.after

    async def after(message: Any, queue: str, outcome: Any) -> None:
        orphans_seen.append([d.entry_id for d in w.inflight.orphans()])  # what the lease loop would see
        await original(message, queue, outcome)

    hook.after = after
    assert (t.add.s(1, 1) | t.add.s(1) | t.add.s(1)).delay().get(timeout=T) == 4
    assert orphans_seen == [[], []]  # the two steps that had a successor


def test_chain_ids_are_fixed_at_send_and_root_parent_ids_set(t: SimpleNamespace, worker: Any) -> None:
    c = t.ids.si(1) | t.ids.si(2) | t.ids.si(3)
    res = c.freeze()
    assert res.id and res.parent.id and res.parent.parent.id  # known before anything is sent
    sent = c.apply_async()
    first, second, third = sent.parent.parent.get(timeout=T), sent.parent.get(timeout=T), sent.get(timeout=T)
    root = sent.parent.parent.id
    assert first[1:3] == [root, None]
    assert second[1:3] == [root, root] and third[1:3] == [root, sent.parent.id]


def test_failing_step_stops_the_chain_and_later_steps_raise_it(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    res = chain(t.add.s(1, 2), t.fail.s(), t.add.s(3, 4), t.tsum.s()).delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    with pytest.raises(Boom):
        res.parent.get(timeout=T)
    with pytest.raises(Boom):
        res.parent.parent.get(timeout=T)
    assert res.parent.parent.parent.get(timeout=T) == 3
    assert res.state is TaskState.FAILURE
    assert runs(r, "tsum") == []


def test_chain_link_error_runs_once_for_the_failing_step(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    c = chain(t.add.s(1, 2), t.fail.s(), t.add.s(3))
    c.link_error(t.errback.s())
    res = c.delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    deadline = time.monotonic() + T
    while not runs(r, "errback") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert runs(r, "errback") == [res.parent.id]


def test_chain_of_immutable_and_kwargs_and_options(t: SimpleNamespace, worker: Any) -> None:
    res = (t.add.s(1, 1) | t.add.s(y=10).set(countdown=0.1) | t.mul.s(2)).apply_async()
    assert res.get(timeout=T) == 24


# ---- groups -------------------------------------------------------------------------------------
def test_group_results_in_member_order_whatever_the_completion_order(t: SimpleNamespace, worker: Any) -> None:
    res = group(t.sleepy.s(i, 0.05 * (5 - i)) for i in range(5)).delay()
    assert isinstance(res, GroupResult)
    assert res.get(timeout=T) == [0, 1, 2, 3, 4]
    assert res.ready() and res.successful() and not res.failed() and not res.waiting()
    assert res.completed_count() == 5 and len(res) == 5 and res.children == res.results
    assert group(t.identity.s(i) for i in range(1000)).delay().join(timeout=T) == list(range(1000))


def test_group_propagate_false_and_failed_members(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    g = group(t.add.s(1, 1), t.fail.s(), t.add.s(2, 2))
    g.link_error(t.errback.s())
    res = g.delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    values = res.get(timeout=T, propagate=False)
    assert values[0] == 2 and isinstance(values[1], Boom) and values[2] == 4
    assert res.failed() and not res.successful() and res.completed_count() == 2
    assert res.results[1].failed() and res.results[0].successful()
    time.sleep(0.3)
    assert runs(r, "errback") == [res.results[1].id]  # once per failing member


def test_group_errback_once_per_failing_member(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    g = group([t.fail.s() for _ in range(42)] + [t.add.s(1, 1) for _ in range(24)])
    g.link_error(t.errback.si("x"))
    g.delay().get(timeout=T, propagate=False)
    deadline = time.monotonic() + T
    while len(runs(r, "errback")) < 42 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert len(runs(r, "errback")) == 42


def test_group_link_runs_once_after_every_member(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    g = group(t.add.s(i, i) for i in range(5))
    g.link(t.callback.si("all done"))
    res = g.delay()
    assert res.get(timeout=T) == [0, 2, 4, 6, 8]
    deadline = time.monotonic() + T
    while not runs(r, "callback") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert runs(r, "callback") == ["all done"]


def test_nested_groups_are_flattened_and_generators_accepted(t: SimpleNamespace, worker: Any) -> None:
    g = group(t.add.si(1, 10), group(t.add.si(1, 100), group(t.add.si(1, 1000), t.add.si(1, 2000))))
    assert len(g.tasks) == 4
    assert g.delay().get(timeout=T) == [11, 101, 1001, 2001]
    assert group(group(t.identity.si(42), t.identity.si(42))).delay().get(timeout=T) == [42, 42]
    nested = group(
        t.identity.si(1), t.identity.si(2), chain(t.identity.si(5), group(t.identity.si(3), t.identity.si(4)))
    )
    assert nested.delay().get(timeout=T) == [1, 2, [3, 4]]


def test_group_save_restore_forget_and_empty_group(app: Celeriac, t: SimpleNamespace, worker: Any) -> None:
    res = group(t.add.s(i, 1) for i in range(3)).delay().save()
    back = GroupResult.restore(res.id, app=app)
    assert back is not None and [x.id for x in back.results] == [x.id for x in res.results]
    assert back.get(timeout=T) == [1, 2, 3]
    back.forget()
    assert GroupResult.restore(res.id, app=app) is None
    assert all(x.state is TaskState.PENDING for x in back.results)
    empty = group([]).delay()
    assert empty.get(timeout=T) == [] and empty.ready() and empty.successful()
    empty.save()
    restored = GroupResult.restore(empty.id, app=app)
    assert restored is not None and restored.results == []


def test_group_skew_map_starmap_chunks(t: SimpleNamespace, worker: Any) -> None:
    g = group(t.add.s(i, i) for i in range(3)).skew(start=0, step=0.1)
    assert [m.options["countdown"] for m in g.tasks] == [0, 0.1, 0.2]
    assert g.delay().get(timeout=T) == [0, 2, 4]
    assert t.identity.map([1, 2, 3]).delay().get(timeout=T) == [1, 2, 3]
    assert t.add.starmap(zip(range(10), range(10))).delay().get(timeout=T) == [i * 2 for i in range(10)]
    res = t.add.chunks(zip(range(100), range(100)), 10).delay()
    assert res.get(timeout=T) == [[2 * (10 * c + i) for i in range(10)] for c in range(10)]


def test_group_is_sent_through_the_bulk_path(app: Celeriac, t: SimpleNamespace, r: redis.Redis) -> None:
    group(t.add.s(0, 0)).delay()  # connection set-up outside the measurement
    r.config_resetstat()
    group(t.add.s(i, i) for i in range(2500)).delay()
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    assert calls.get("evalsha", 0) == 3  # three chunks of 1,000 (enqueue_many.lua)
    assert calls.get("xadd") == 2500


# ---- chords ---------------------------------------------------------------------------------------
def test_chord_body_gets_header_values_in_header_order(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    res = chord(t.sleepy.s(i, 0.05 * (5 - i)) for i in range(5))(t.body.s())
    assert res.get(timeout=T) == [0, 1, 2, 3, 4]
    assert isinstance(res.parent, GroupResult) and res.parent.get(timeout=T) == [0, 1, 2, 3, 4]
    assert chord([t.add.s(i, i) for i in range(4)], t.tsum.s()).delay().get(timeout=T) == 12
    assert (group(t.add.s(i, i) for i in range(4)) | t.tsum.s()).delay().get(timeout=T) == 12
    assert chord([t.add.s(2, 5)], t.add_to_all.s(9)).delay().get(timeout=T) == [16]
    assert (group([t.add.s(2, 5)]) | t.add_to_all.s(9)).delay().get(timeout=T) == [16]
    time.sleep(0.1)
    assert chord_keys(r) == []  # deleted when the body finished


def test_empty_chord_header_calls_the_body_with_an_empty_list(t: SimpleNamespace, worker: Any) -> None:
    assert chord([], t.body.s()).delay().get(timeout=T) == []
    assert (group([]) | t.tsum.s()).delay().get(timeout=T) == 0


def test_chord_header_failure_fails_the_body_once(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    c = chord([t.add.s(1, 2), t.add.s(3, 4), t.fail.s()], t.body.s().on_error(t.errback.s()))
    res = c.delay()
    with pytest.raises(Boom):
        res.get(timeout=T)  # the header task's own exception
    with pytest.raises(ChordError, match=f"Dependency {res.parent.results[2].id} raised Boom"):
        res.get(timeout=T, follow_parents=False)
    assert res.state is TaskState.FAILURE
    parts = res.parent.get(timeout=T, propagate=False)
    assert parts[:2] == [3, 7] and isinstance(parts[2], Boom)
    time.sleep(0.3)
    assert runs(r, "body") == []
    assert runs(r, "errback") == [res.id]  # once
    assert chord_keys(r) == []


def test_chord_options_link_and_immutable_body(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    c = chord([t.add.s(1, 1), t.add.s(2, 2)], t.identity.si("ignored the values"))
    c.link(t.callback.s())
    res = c.delay()
    assert res.get(timeout=T) == "ignored the values"
    deadline = time.monotonic() + T
    while not runs(r, "callback") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runs(r, "callback") == ["ignored the values"]
    assert chord([t.add.s(1, 1)], t.tsum.s()).apply_async(queue="default").get(timeout=T) == 2


def test_chord_partial_args_go_to_the_header(t: SimpleNamespace, worker: Any) -> None:
    assert chord([t.add.s(1), t.add.s(2)], t.tsum.s()).apply_async((10,)).get(timeout=T) == 23


def test_nested_chords_and_chains_of_chords(t: SimpleNamespace, worker: Any) -> None:
    c = chord(
        [
            chord([t.add.s(1, 2), t.add.s(3, 4)], t.add_to_all.s(5)),
            chord([t.add.s(6, 7)], t.add_to_all.s(10)),
        ],
        t.identity.s(),
    )
    assert c.delay().get(timeout=T) == [[8, 12], [23]]
    c2 = t.add.si(1, 0) | group(t.add.s(1), t.add.s(1)) | group(t.tsum.s(), t.tsum.s()) | t.tsum.s()
    assert c2.delay().get(timeout=T) == 8
    c3 = t.identity.s(42) | group(t.identity.s(), t.identity.s()) | t.identity.s()
    assert c3.delay().get(timeout=T) == [42, 42]
    c4 = t.add.s(2, 2) | group(t.add.s(i) for i in range(4)) | t.add_to_all.s(8)
    assert c4.delay().get(timeout=T) == [12, 13, 14, 15]
    c5 = chain(
        t.identity.si(1),
        chord(
            [
                t.identity.si(2),
                chain(t.identity.si(3), chord([t.identity.si(4), t.identity.si(5)], t.identity.si(6))),
            ],
            t.identity.si(7),
        ),
    )
    assert c5.delay().get(timeout=T) == 7


def test_chord_of_1000(t: SimpleNamespace, worker: Any) -> None:
    assert (group(t.identity.si(i) for i in range(1000)) | t.tsum.s()).delay().get(timeout=T) == 499500
    assert (t.identity.si(1) | group(t.identity.s() for _ in range(1000)) | t.tsum.s()).delay().get(
        timeout=T
    ) == 1000


def test_chord_body_is_stored_once_and_member_messages_grow_by_a_bounded_size(
    app: Celeriac, t: SimpleNamespace, r: redis.Redis
) -> None:
    big_body = t.identity.s("x" * 10_000)
    chord([t.add.s(i, i) for i in range(50)], big_body).delay()
    entries = r.xrange("celeriac:{default}:ready")
    assert len(entries) == 50
    plain = len(
        app.codec.encode(
            __import__("celeriac.message", fromlist=["Message"]).Message(
                "d1a0d3c0-5b3f-4b6c-9b7e-0f5b1f3c2a11", t.add.name, (49, 49)
            )
        )
    )
    assert (
        max(len(fields[b"m"]) for _, fields in entries) - plain <= 36
    )  # the chord pointer, named in docs/workflows.md
    (key,) = chord_keys(r)
    assert r.ttl(key) > 3000
    assert len(r.hget(key, "b")) > 10_000  # the body, once


# ---- callbacks --------------------------------------------------------------------------------------------
def test_link_and_link_error_on_apply_async(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    ok = t.add.apply_async((1, 2), link=t.callback.s())
    bad = t.fail.apply_async(link_error=t.errback.s())
    assert ok.get(timeout=T) == 3
    with pytest.raises(Boom):
        bad.get(timeout=T)
    deadline = time.monotonic() + T
    while (not runs(r, "callback") or not runs(r, "errback")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runs(r, "callback") == [3] and runs(r, "errback") == [bad.id]
    sig = t.add.s(2, 2)
    sig.link(t.callback.s())
    sig.link_error(t.errback.s())
    assert sig.delay().get(timeout=T) == 4
    while len(runs(r, "callback")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runs(r, "callback") == [3, 4]


def test_replace_hands_its_place_over(t: SimpleNamespace, worker: Any) -> None:
    res = (t.replacer.s(1) | t.add.s(1)).delay()
    assert res.get(timeout=T) == 203  # (1 + 100) * 2 + 1
    assert res.parent.get(timeout=T) == 202  # the replaced task's id holds the replacement's value
    assert (t.add.si(0, 0) | t.replace_with_group.si(3) | t.identity.s()).delay().get(timeout=T) == [0, 1, 2]
    assert chord([t.replacer.s(1), t.add.s(1, 1)], t.tsum.s()).delay().get(timeout=T) == 204


# ---- results --------------------------------------------------------------------------------------------
def test_async_result_state_info_forget(t: SimpleNamespace, worker: Any) -> None:
    res = (t.add.s(1, 1) | t.add.s(1)).delay()
    assert res.get(timeout=T) == 3
    assert res.state is TaskState.SUCCESS and res.info == 3
    assert [c.id for c in res.parent.children] == [res.id] and res.children == []
    linked = t.add.s(1, 2)
    linked.link(t.callback.s())
    first = linked.delay()
    assert first.get(timeout=T) == 3 and len(first.children) == 1  # the callback, sent with its own id
    res.forget()
    assert AsyncResult(res.id, res.app).state is TaskState.PENDING


def test_workflow_members_store_results_even_when_ignored(
    app: Celeriac, t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    assert app.conf.task_ignore_result  # celeriac's default
    res = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()).delay()
    assert res.get(timeout=T) == 6
    for member in res.parent.results:
        assert 0 < r.pttl(f"celeriac:result:{member.id}") <= app.conf.result_expires_s * 1000
    t.add.delay(1, 1)  # a plain task still stores nothing
    time.sleep(0.3)
    assert len(list(r.scan_iter("celeriac:result:*"))) == 3


# ---- eager ------------------------------------------------------------------------------------------------
def test_eager_mode_runs_every_workflow(redis_url: str) -> None:
    app = Celeriac("eager", broker="memory://", task_always_eager=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    @app.task
    def fail(*a: Any) -> None:
        raise Boom("eager")

    assert (add.s(2, 2) | add.s(4) | add.s(8)).delay().get() == 16
    assert group(add.s(i, i) for i in range(4)).delay().get() == [0, 2, 4, 6]
    assert chord([add.s(i, i) for i in range(4)], tsum.s()).delay().get() == 12
    assert chord([], tsum.s()).delay().get() == 0
    with pytest.raises(Boom):
        chord([add.s(1, 1), fail.s()], tsum.s()).delay().get()
    with pytest.raises(ChordError):
        chord([add.s(1, 1), fail.s()], tsum.s()).delay().get(follow_parents=False)
    with pytest.raises(Boom):
        chain(add.s(1, 1), fail.s(), add.s(1)).delay().get()
    assert add.map([]).delay().get() == []
    assert (add.s(1, 1) | add.s(1)).apply().get() == 3

    class NotSerializable:
        pass

    with pytest.raises(Exception, match="serialize"):
        chain(add.s(1, 1), add.s(NotSerializable())).apply()


# ---- Celery bugs as regression tests -------------------------------------------------------------------
def test_celery_3363_connection_lost_while_counting_a_member_loses_no_body(
    app: Celeriac, t: SimpleNamespace, thread_worker: Any, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery: a socket timeout inside on_chord_part_return lost the body. Here the member's plan
    fails, its delivery is handed back, it runs again and counts once: the body runs once."""
    from celeriac.workflow.redis import RedisWorkflowStore

    real = RedisWorkflowStore.apply
    failures = {"left": 2}

    async def flaky(self: RedisWorkflowStore, plan: Any) -> Any:
        if plan.parts and failures["left"] > 0:
            failures["left"] -= 1
            raise redis.ConnectionError("simulated timeout")
        return await real(self, plan)

    monkeypatch.setattr(RedisWorkflowStore, "apply", flaky)
    thread_worker(app, concurrency=4, pool="threads")
    res = chord([t.add.s(i, i) for i in range(4)], t.body.s()).delay()
    assert res.get(timeout=T) == [0, 2, 4, 6]
    time.sleep(0.3)
    assert runs(r, "body") == [[0, 2, 4, 6]] and failures["left"] == 0


def test_celery_5237_tiny_result_expires_cannot_break_a_chord(
    redis_url: str, thread_worker: Any, r: redis.Redis
) -> None:
    """Celery: result_expires=0 made EXPIRE delete the chord's keys; the chord hung forever."""
    app = Celeriac("wf", broker=redis_url, result_expires_s=0.001)

    @app.task
    def slow_identity(x: int) -> int:
        time.sleep(0.05)
        return x

    @app.task
    def collect(xs: list[int]) -> list[int]:
        r.rpush("runs:collect", json.dumps(xs))
        return xs

    thread_worker(app, concurrency=2, pool="threads")
    chord([slow_identity.s(i) for i in range(6)], collect.s()).delay()
    deadline = time.monotonic() + T
    while not r.lrange("runs:collect", 0, -1) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [json.loads(x) for x in r.lrange("runs:collect", 0, -1)] == [[0, 1, 2, 3, 4, 5]]


def test_celery_3781_chord_results_in_header_order_not_completion_order(
    t: SimpleNamespace, worker: Any
) -> None:
    res = chord([t.sleepy.s(i, 0.3 - 0.05 * i) for i in range(6)], t.body.s()).delay()
    assert res.get(timeout=T) == [0, 1, 2, 3, 4, 5]


def test_celery_3332_implicit_chord_body_runs_exactly_once(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    results = [(group(t.add.s(i, j) for j in range(3)) | t.body.s()).delay() for i in range(10)]
    for i, res in enumerate(results):
        assert res.get(timeout=T) == [i, i + 1, i + 2]
    time.sleep(0.3)
    assert sorted(map(tuple, runs(r, "body"))) == sorted((i, i + 1, i + 2) for i in range(10))


def test_celery_3332_redelivered_header_member_counts_once(
    app: Celeriac, t: SimpleNamespace, r: redis.Redis
) -> None:
    """A member that ran twice (its worker died before the ack) reports twice: it counts once, and
    the body is sent once, with the last count."""
    from celeriac.workflow.build import store_for
    from celeriac.workflow.outcome import chord_values
    from celeriac.workflow.plan import Part, Plan

    chord([t.add.s(1, 1), t.add.s(2, 2)], t.body.s()).delay()
    (key,) = chord_keys(r)
    store = store_for(app)
    queue, chord_id = "default", key.decode().rsplit(":", 1)[1]
    part = Part(queue, chord_id, 0, True, msgpack.packb(0) + msgpack.packb(2))
    for _ in range(3):
        store.apply_sync(Plan(parts=[part]), dedup=True)
    assert r.hget(key, "d") == b"1" and r.zrange(key + b":v", 0, -1) == [msgpack.packb(0) + msgpack.packb(2)]
    assert r.xlen("celeriac:{default}:ready") == 2
    second = Part(queue, chord_id, 1, True, msgpack.packb(1) + msgpack.packb(4))
    store.apply_sync(Plan(parts=[second, second]), dedup=True)
    store.apply_sync(Plan(parts=[second]), dedup=True)
    assert r.xlen("celeriac:{default}:ready") == 3  # the body, once
    size, blob = store.chord_blob_sync(queue, chord_id)
    assert chord_values(app, chord_id, size, blob) == [2, 4]


def test_redelivered_chain_step_dispatches_its_successor_once(
    app: Celeriac, t: SimpleNamespace, r: redis.Redis
) -> None:
    from celeriac.workflow.build import _Ctx, _launch, freeze, store_for
    from celeriac.workflow.plan import Cont, Plan

    sig = t.add.s(1)
    freeze(app, sig)
    store = store_for(app)
    for _ in range(3):  # the same step finishing three times (runs after crashes) sends it once
        plan = Plan()
        _launch(_Ctx(app, plan, None, None, False), sig, (1,), {}, Cont())
        store.apply_sync(plan, dedup=True)
    assert r.xlen("celeriac:{default}:ready") == 1
    assert r.pttl("celeriac:{default}:fired") > 0


def test_celery_5947_6721_chord_of_chains_ending_in_groups(t: SimpleNamespace, worker: Any) -> None:
    """Celery counted the chord size wrongly for such headers: the body ran twice or never."""
    c = chord(
        [
            chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2))),
            t.add.s(5, 5),
            chain(t.identity.si(7), t.add.s(1)),
        ],
        t.body.s(),
    )
    assert c.delay().get(timeout=T) == [[3, 4], 10, 8]
    deep = group(chord((t.identity.si(42),), t.identity.s()))
    assert deep.delay().get(timeout=T) == [[42]]


def test_celery_6220_9674_chain_in_header_failing_before_its_end_fails_the_chord(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    """Celery: a header chain failing before its last task never reported to the chord: it hung."""
    c = chord([chain(t.fail.s(), t.add.s(1), t.add.s(2)), t.add.s(1, 1)], t.body.s())
    res = c.delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    with pytest.raises(ChordError):
        res.get(timeout=T, follow_parents=False)
    time.sleep(0.2)
    assert runs(r, "body") == [] and chord_keys(r) == []


def test_celery_6437_exception_in_chain_followed_by_group_does_not_hang(
    t: SimpleNamespace, worker: Any
) -> None:
    res = chain(t.add.s(1, 1), t.fail.s(), group(t.add.s(1), t.add.s(2))).delay()
    assert isinstance(res, GroupResult)
    with pytest.raises(Boom):
        res.get(timeout=T)
    assert res.ready() and res.failed()


def test_celery_6734_group_with_a_chord_whose_body_is_a_chain(t: SimpleNamespace, worker: Any) -> None:
    g = group(chord([t.add.s(1, 1), t.add.s(2, 2)], chain(t.tsum.s(), t.add.s(10))), t.add.s(5, 5))
    assert g.delay().get(timeout=T) == [16, 10]


def test_celery_4834_chord_error_with_a_chain_body_runs_the_errback_once(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    """Celery's chord error handler crashed ('task_id must not be empty') when the body was a chain;
    the client hung."""
    body = chain(t.tsum.s(), t.add.s(1), t.add.s(2))
    body.link_error(t.errback.s())
    res = chord([t.add.s(1, 1), t.fail.s()], body).delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    with pytest.raises(ChordError):
        res.get(timeout=T, follow_parents=False)
    with pytest.raises(ChordError):
        res.parent.get(timeout=T, follow_parents=False)
    time.sleep(0.3)
    assert len(runs(r, "errback")) == 1 and runs(r, "tsum") == []


def test_celery_8786_chain_of_groups_with_failing_members(
    t: SimpleNamespace, worker: Any, r: redis.Redis
) -> None:
    res = chain(group(t.add.s(1, 1), t.fail.s()), group(t.body.s(), t.body.s()), t.tsum.s()).delay()
    with pytest.raises(Boom):
        res.get(timeout=T)
    time.sleep(0.2)
    assert runs(r, "body") == []
    assert chord_keys(r) == []


def test_member_failed_fails_a_waiting_chord(app: Celeriac, t: SimpleNamespace, r: redis.Redis) -> None:
    """What revoke, expiry and dead letters call: the chord fails instead of waiting forever."""
    from celeriac.message import decode
    from celeriac.workflow import member_failed

    res = chord([t.add.s(1, 1), t.add.s(2, 2)], t.body.s()).delay()
    data = r.xrange("celeriac:{default}:ready")[1][1][b"m"]
    member_failed(app, data, "default", TaskState.REVOKED, "celeriac.exceptions.TaskRevokedError", "revoked")
    with pytest.raises(ChordError, match=f"Dependency {decode(data).id} raised TaskRevokedError"):
        res.get(timeout=T, follow_parents=False)
    assert chord_keys(r) == []


def test_expired_member_fails_the_chord(t: SimpleNamespace, worker: Any, r: redis.Redis) -> None:
    res = chord([t.add.s(1, 1), t.add.s(2, 2).set(expires=-1)], t.body.s()).delay()
    with pytest.raises(ChordError, match="TaskExpiredError"):
        res.get(timeout=T, follow_parents=False)
    time.sleep(0.2)
    assert runs(r, "body") == []


def test_workflows_need_a_redis_broker_or_eager_mode() -> None:
    app = Celeriac("mem", broker="memory://")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ChordError, match="need a Redis broker"):
        (add.s(1, 1) | add.s(1)).delay()
    assert (add.s(1, 1) | add.s(1)).apply().get() == 3


def test_worker_thread_type() -> None:
    assert ThreadWorker  # imported for the fixtures' types


def test_dead_lettered_member_fails_the_chord(redis_url: str, thread_worker: Any, r: redis.Redis) -> None:
    """A member delivered max_deliveries times without an outcome (its worker kept dying) is
    dead-lettered by a reclaim: the chord fails instead of waiting for it forever."""
    app = Celeriac("wf", broker=redis_url, lease_s=0.5, max_deliveries=1)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def collect(values: list[int]) -> list[int]:
        return values

    res = chord([add.s(1, 1), add.s(2, 2)], collect.s()).delay()
    stream = "celeriac:{default}:ready"
    r.xgroup_create(stream, "celeriac", id="0", mkstream=True)
    r.xreadgroup("celeriac", "ghost", {stream: ">"}, count=1)  # a worker that died holding member 0
    time.sleep(0.6)
    thread_worker(app, concurrency=2)
    with pytest.raises(ChordError, match="WorkerLostError"):
        res.get(timeout=T, follow_parents=False)
    assert res.parent.results[0].state is TaskState.FAILURE
    assert app.broker.stats("default").dead == 1


def test_chord_of_pickle_tasks(redis_url: str, thread_worker: Any) -> None:
    """A pickle task's value reaches the body through its (pickled) result record."""
    app = Celeriac("wfp", broker=redis_url, accept_content=["msgpack", "pickle"])

    @app.task(serializer="pickle")
    def as_set(x: int) -> set[int]:
        return {x, x + 1}

    @app.task(serializer="pickle")
    def union(sets: list[set[int]]) -> list[int]:
        return sorted(set().union(*sets))

    thread_worker(app, concurrency=4, pool="threads")
    assert chord([as_set.s(1), as_set.s(5)], union.s()).delay().get(timeout=T) == [1, 2, 5, 6]
    app.close()


def test_celery_10526_revoked_member_fails_the_chord(
    t: SimpleNamespace, r: redis.Redis, thread_worker: Any
) -> None:
    """Celery: a chord member revoked through control skipped the chord's bookkeeping; it hung."""
    res = chord([t.add.s(1, 1), t.add.s(2, 2)], t.body.s()).delay()
    res.parent.results[1].revoke()  # before any worker saw it
    thread_worker(res.app, concurrency=2)
    with pytest.raises(ChordError, match="TaskRevokedError"):
        res.get(timeout=T, follow_parents=False)
    time.sleep(0.2)
    assert runs(r, "body") == [] and chord_keys(r) == []
