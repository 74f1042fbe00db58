"""Content types, message signing, result size limits and secrets, with no Redis (eager mode and the
executor directly; the same paths on a real worker are in tests/integration/test_security_redis.py)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

import msgpack
import pytest

from celeriac import Celeriac, ConfigurationError, DecodeError, Retry, TaskState
from celeriac.codec import Codec
from celeriac.config import Config
from celeriac.eager import run_job
from celeriac.exceptions import ResultTooLarge
from celeriac.execution import Execution, Job, Outcome
from celeriac.message import SIGNED_MESSAGE, SIGNED_RESULT, Message, decode, encode, new_task_id, sign
from celeriac.record import ResultRecord, encode_record

KEY = "k" * 32
OLD_KEY = "o" * 32
OTHER_KEY = "x" * 32


def make_app(**settings: Any) -> Celeriac:
    return Celeriac("sec", broker="memory://", result_backend="memory://", **settings)


def message(task: str = "sec.add", args: tuple[Any, ...] = (1, 2), **fields: Any) -> Message:
    return Message(id=new_task_id(), task=task, args=args, **fields)


def dead_reason(app: Celeriac, data: bytes) -> str:
    out = Execution(app).prepare(data)
    assert isinstance(out, Outcome), f"expected a refusal, got a job: {out}"
    assert out.kind == "dead"
    return out.reason


# ---- signing ---------------------------------------------------------------------------------------
def test_unsigned_messages_pay_zero_bytes_and_signed_ones_34() -> None:
    m = message()
    plain = encode(m)
    assert plain[0] in (0x94, 0x95, 0x96)  # a msgpack fixarray of 4-6 fields
    assert make_app().codec.encode(m) == plain
    signed = make_app(message_signing_key=KEY).codec.encode(m)
    assert signed[:2] == SIGNED_MESSAGE
    assert len(signed) == len(plain) + 34
    assert signed.endswith(plain)


def test_signed_round_trip_and_refusals() -> None:
    app = make_app(message_signing_key=KEY)

    @app.task(name="sec.add")
    def add(x: int, y: int) -> int:
        return x + y

    m = message()
    signed = app.codec.encode(m)
    assert app.codec.decode(signed) == m
    job = Execution(app).prepare(signed)
    assert isinstance(job, Job) and job.message == m

    assert "unsigned message refused" in dead_reason(app, encode(m))
    tampered = bytearray(signed)
    tampered[-1] ^= 0x01  # the last argument changes: 2 -> 3
    assert "bad signature" in dead_reason(app, bytes(tampered))
    forged = encode(m, signing_key=OTHER_KEY.encode())
    assert "bad signature" in dead_reason(app, forged)
    assert "truncated" in dead_reason(app, signed[:20])


def test_key_rotation_accepts_listed_old_keys_only() -> None:
    m = message()
    old_producer = make_app(message_signing_key=OLD_KEY)
    new_producer = make_app(message_signing_key=KEY)
    rotating_worker = make_app(message_signing_key=KEY, message_signing_keys=[OLD_KEY])
    done_worker = make_app(message_signing_key=KEY)

    assert rotating_worker.codec.decode(old_producer.codec.encode(m)) == m
    assert rotating_worker.codec.decode(new_producer.codec.encode(m)) == m
    with pytest.raises(DecodeError, match="bad signature"):
        done_worker.codec.decode(old_producer.codec.encode(m))
    # a worker re-signs the retries it parks with its own signing key
    assert rotating_worker.codec.encode(m)[:2] == SIGNED_MESSAGE
    assert done_worker.codec.decode(rotating_worker.codec.encode(m)) == m


def test_old_keys_need_a_signing_key() -> None:
    app = make_app(message_signing_keys=[OLD_KEY])
    with pytest.raises(ConfigurationError, match="message_signing_keys"):
        _ = app.codec


def test_a_worker_without_keys_runs_signed_messages_so_producers_can_sign_first() -> None:
    m = message()
    assert make_app().codec.decode(make_app(message_signing_key=KEY).codec.encode(m)) == m


def test_a_signed_result_cannot_pass_for_a_signed_message() -> None:
    body = encode(message())
    as_result = sign(body, KEY.encode(), SIGNED_RESULT)
    with pytest.raises(DecodeError, match="truncated or unknown signed envelope"):
        decode(as_result, signing_keys=[KEY.encode()])


def test_retries_of_a_signed_message_are_signed() -> None:
    app = make_app(message_signing_key=KEY, task_always_eager=True)
    calls: list[int] = []

    @app.task(bind=True, name="sec.flaky")
    def flaky(self: Any) -> str:
        calls.append(self.request.retries)
        if len(calls) < 3:
            raise self.retry(countdown=0)
        return "ok"

    assert flaky.delay().get() == "ok"
    assert calls == [0, 1, 2]
    job = Execution(app).prepare(app.codec.encode(message("sec.flaky", ())))
    assert isinstance(job, Job)
    retry = Execution(app).finish(job, exc=Retry(countdown_s=1.0))
    assert retry.kind == "retry" and retry.retry_data[:2] == SIGNED_MESSAGE
    assert app.codec.decode(retry.retry_data).retries == 1


def test_signing_keys_are_validated_and_never_echoed() -> None:
    secret = "short-secret"
    for setting, value in (("message_signing_key", secret), ("message_signing_keys", [secret])):
        with pytest.raises(ConfigurationError, match=setting) as info:
            make_app(**{setting: value})
        assert secret not in str(info.value)
    with pytest.raises(ConfigurationError, match="message_signing_key"):
        make_app(message_signing_key=12345678901234567890)
    with pytest.raises(ConfigurationError, match="message_signing_keys"):
        make_app(message_signing_keys=KEY)  # one string, not a list
    assert make_app(message_signing_key=KEY.encode()).codec.signing_key == KEY.encode()


def test_keys_and_urls_never_show_in_reprs() -> None:
    app = Celeriac(
        "sec",
        broker="redis://user:hunter2-broker@127.0.0.1:1/0",
        result_backend="redis://:hunter2-results@127.0.0.1:1/1",
        message_signing_key="hunter2-key-" + "k" * 20,
        message_signing_keys=["hunter2-old-" + "o" * 20],
    )
    for text in (repr(app), repr(app.conf), str(app.conf), f"{app.conf!r}", repr(app.codec)):
        assert "hunter2" not in text, text
    assert "redis://user:***@127.0.0.1:1/0" in repr(app.conf)
    assert "message_signing_keys=['***' x 1]" in repr(app.conf)


# ---- content types -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_msgpack_only_by_default() -> None:
    app = make_app()
    assert app.conf.accept_content == ("msgpack",)
    assert app.conf.task_serializer == "msgpack"
    assert app.startup_warnings() == []

    @app.task(serializer="pickle", name="sec.p")
    def p(point: Point) -> Point:
        return point

    with pytest.raises(ConfigurationError, match="accept_content"):
        p.delay(Point(1, 2))
    with pytest.raises(ConfigurationError, match="task_serializer"):
        make_app(task_serializer="yaml")
    # the envelope is msgpack: it stays accepted whatever the list says (Celery's ["pickle"] ports)
    assert make_app(accept_content=("pickle",)).conf.accept_content == ("msgpack", "pickle")
    with pytest.raises(ConfigurationError, match="accept_content"):
        make_app(accept_content="msgpack,pickle")
    with pytest.raises(ConfigurationError, match=r"@app\.task options"):
        app.task(serializer="yaml")(lambda: None)


def test_pickle_opt_in_per_task_round_trips_python_objects() -> None:
    app = make_app(accept_content=["msgpack", "pickle"], task_always_eager=True, task_ignore_result=False)

    @app.task(serializer="pickle")
    def move(point: Point, *, by: datetime.timedelta) -> tuple[Point, datetime.timedelta, set[int]]:
        return Point(point.x + 1, point.y + 1), by, {1, 2}

    @app.task
    def plain(x: int) -> int:
        return x

    result = move.delay(Point(1, 2), by=datetime.timedelta(seconds=3))
    assert result.get() == (Point(2, 3), datetime.timedelta(seconds=3), {1, 2})
    assert plain.delay(5).get() == 5
    assert any("pickle" in w for w in app.startup_warnings())


def test_pickle_per_app_and_the_envelope_stays_msgpack() -> None:
    app = make_app(accept_content=("msgpack", "pickle"), task_serializer="pickle")

    @app.task(name="sec.p")
    def p(point: Point) -> None: ...

    m = message("sec.p", (Point(1, 2),), serializer="pickle")
    data = app.codec.encode(m)
    fields = msgpack.unpackb(data, raw=False)
    assert fields[0] == 1 and fields[2] == "sec.p"
    assert isinstance(fields[3], bytes) and fields[4] == {} and fields[5]["ct"] == "pickle"
    assert app.codec.decode(data) == m


def test_a_worker_that_does_not_accept_pickle_dead_letters_it_with_the_reason() -> None:
    producer = make_app(accept_content=("msgpack", "pickle"))
    worker = make_app()

    @worker.task(name="sec.p")
    def p(point: Point) -> None: ...

    data = producer.codec.encode(message("sec.p", (Point(1, 2),), serializer="pickle"))
    reason = dead_reason(worker, data)
    assert "'pickle' refused" in reason and "accept_content" in reason


def test_a_pickled_message_is_unpickled_only_after_its_signature_checks_out() -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return (pytest.fail, ("unpickled an unsigned message",))

    # a hostile producer without the key crafts a pickle message
    hostile = make_app(accept_content=("msgpack", "pickle"))
    data = hostile.codec.encode(message("sec.p", (Boom(),), serializer="pickle"))
    worker = make_app(accept_content=("msgpack", "pickle"), message_signing_key=KEY)
    assert "unsigned message refused" in dead_reason(worker, data)
    forged = encode(message("sec.p", (Boom(),), serializer="pickle"), signing_key=OTHER_KEY.encode())
    assert "bad signature" in dead_reason(worker, forged)


def test_broken_pickles_are_dead_lettered_not_raised() -> None:
    worker = make_app(accept_content=("msgpack", "pickle"))
    fields = [1, new_task_id(), "sec.p", b"\x80\x05not a pickle", {}, {"ct": "pickle"}]
    assert "cannot unpickle" in dead_reason(worker, msgpack.packb(fields))
    fields[3] = __import__("pickle").dumps("just a string")
    assert "(args, kwargs)" in dead_reason(worker, msgpack.packb(fields))
    fields[5] = {"ct": "yaml"}
    assert "bad option ct" in dead_reason(worker, msgpack.packb(fields))


def test_pickled_results_need_pickle_and_a_signature_to_be_read() -> None:
    record = ResultRecord("t1", TaskState.SUCCESS, Point(1, 2))
    pickled = encode_record(record, pickled=True)
    m = message(serializer="pickle")
    with pytest.raises(DecodeError, match="pickled"):
        make_app().codec.decode_result("t1", pickled)
    assert make_app(accept_content=("msgpack", "pickle")).codec.decode_result("t1", pickled).value == Point(
        1, 2
    )

    signer = make_app(accept_content=("msgpack", "pickle"), message_signing_key=KEY)
    signed = signer.codec.encode_result(record, m)
    assert signed[:2] == SIGNED_RESULT
    assert signer.codec.decode_result("t1", signed).value == Point(1, 2)
    with pytest.raises(DecodeError, match="pickled"):  # unsigned pickle refused where keys are set
        signer.codec.decode_result("t1", pickled)
    tampered = signed[:-1] + bytes([signed[-1] ^ 1])
    with pytest.raises(DecodeError, match="bad signature"):
        signer.codec.decode_result("t1", tampered)
    # msgpack results are not signed: nothing to pay, nothing unpickled
    assert signer.codec.encode_result(ResultRecord("t1", TaskState.SUCCESS, 3), message())[:1] != b"\xc1"


def test_pickle_warning_at_worker_start() -> None:
    unsigned = make_app(accept_content=("msgpack", "pickle"))
    signed = make_app(accept_content=("msgpack", "pickle"), message_signing_key=KEY)
    assert "consider message_signing_key" in unsigned.startup_warnings()[0]
    assert "messages are signed" in signed.startup_warnings()[0]


# ---- result size limit -------------------------------------------------------------------------------
def test_a_result_over_result_max_bytes_fails_the_task_with_a_clear_error() -> None:
    app = make_app(task_always_eager=True, task_ignore_result=False, result_max_bytes=1000)

    @app.task
    def big(n: int) -> bytes:
        return b"x" * n

    assert big.delay(100).get() == b"x" * 100
    result = big.delay(5000)
    assert result.state is TaskState.FAILURE
    with pytest.raises(ResultTooLarge, match=r"result_max_bytes=1000") as info:
        result.get()
    assert "return a reference" in str(info.value)
    assert len(result._fetch().exc_message or "") < 1000  # type: ignore[union-attr]


def test_the_default_result_limit_is_one_mebibyte() -> None:
    assert Config().result_max_bytes == 1 << 20
    codec = Codec(result_max_bytes=100)
    with pytest.raises(ResultTooLarge):
        codec.encode_result(ResultRecord("t", TaskState.SUCCESS, "y" * 200), message())


def test_huge_exception_messages_are_truncated_in_stored_errors() -> None:
    app = make_app()

    @app.task(name="sec.shout")
    def shout() -> None:
        raise ValueError("a" * 100_000)

    job = Execution(app).prepare(encode(message("sec.shout", ())))
    assert isinstance(job, Job)
    out = run_job(Execution(app), job)
    assert out.store is not None
    record = app.codec.decode_result(out.store.task_id, out.store.payload)
    assert record.exc_message is not None
    assert len(record.exc_message) < 17_000 and record.exc_message.endswith("truncated)")


def test_environment_configures_content_and_keys() -> None:
    conf = Config.from_env(
        {
            "CELERIAC_ACCEPT_CONTENT": "msgpack, pickle",
            "CELERIAC_TASK_SERIALIZER": "pickle",
            "CELERIAC_MESSAGE_SIGNING_KEY": KEY,
            "CELERIAC_MESSAGE_SIGNING_KEYS": f"{OLD_KEY},{OTHER_KEY}",
            "CELERIAC_RESULT_MAX_BYTES": "2048",
        }
    )
    assert conf.accept_content == ("msgpack", "pickle")
    assert conf.task_serializer == "pickle"
    assert conf.message_signing_keys == (OLD_KEY, OTHER_KEY)
    assert conf.result_max_bytes == 2048
    codec = Codec.from_config(conf)
    assert codec.verify_keys == (KEY.encode(), OLD_KEY.encode(), OTHER_KEY.encode())


def test_logging_of_refusals_names_no_key(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(message_signing_key=KEY)
    with caplog.at_level(logging.DEBUG):
        reason = dead_reason(app, encode(message()))
    assert KEY not in reason and KEY not in caplog.text
