from __future__ import annotations

import msgpack
import pytest

from celeriac import DecodeError, SerializationError
from celeriac.message import PROTOCOL_VERSION, Message, decode, encode, new_task_id


def test_round_trip_keeps_every_field() -> None:
    m = Message(
        id=new_task_id(),
        task="shop.tasks.add",
        args=(1, "two", [3], {"four": 4}, b"five", None, 1.5, True),
        kwargs={"k": "v"},
        retries=2,
        eta_ms=1_700_000_000_000,
        expires_ms=1_700_000_100_000,
        ignore_result=False,
        max_retries=7,
        acks_late=False,
        result_expires_s=30.0,
    )
    assert decode(encode(m)) == m


def test_small_task_message_is_compact() -> None:
    # the bar is 64 bytes of Redis memory per queued add(1, 2); the message itself must stay small
    data = encode(Message(id=new_task_id(), task="tasks.add", args=(1, 2)))
    assert len(data) <= 36
    fields = msgpack.unpackb(data)
    assert fields[0] == PROTOCOL_VERSION
    assert isinstance(fields[1], bytes) and len(fields[1]) == 16  # UUID carried as 16 raw bytes
    assert len(fields) == 4  # defaults are left out


def test_non_uuid_task_id_travels_as_text() -> None:
    m = Message(id="order-42-invoice", task="t")
    assert decode(encode(m)).id == "order-42-invoice"
    upper = "A" * 8 + "-" + "B" * 4 + "-" + "4" * 4 + "-" + "8" * 4 + "-" + "C" * 12
    assert decode(encode(Message(id=upper, task="t"))).id == upper  # not canonical: kept verbatim


def test_unknown_options_survive_a_round_trip() -> None:
    m = Message(id=new_task_id(), task="t", extra={"zz": 1})
    assert decode(encode(m)).extra == {"zz": 1}


def test_non_serializable_argument_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="cannot serialize arguments of task 't'"):
        encode(Message(id=new_task_id(), task="t", args=(object(),)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "undecodable"),
        (b"\xc1garbage", "truncated or unknown signed envelope"),
        (b"\x00garbage", "undecodable"),
        (msgpack.packb({"a": 1}), "not a celeriac envelope"),
        (msgpack.packb([2, "id", "t", []]), "unsupported message protocol version"),
        (msgpack.packb([1, "id", "", []]), "bad task name"),
        (msgpack.packb([1, "id", "t", "notalist"]), "args field is not a list"),
        (msgpack.packb([1, "id", "t", [], [1, 2]]), "kwargs field"),
        (msgpack.packb([1, 5, "t", []]), "bad task id"),
        (msgpack.packb([1, "id", "t", [], {}, {"r": "x"}]), "bad option"),
    ],
)
def test_decode_rejects_malformed_messages(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


@pytest.mark.parametrize("kwargs", [{}, {"z": 3}])
def test_encode_call_makes_the_bytes_encode_makes(kwargs: dict[str, int]) -> None:
    from celeriac.message import encode_call

    for task_id in (new_task_id(), "my-own-id"):
        message = Message(task_id, "t.add", (1, 2), kwargs)
        assert encode_call(task_id, "t.add", (1, 2), kwargs) == encode(message)
        assert encode_call(task_id, "t.add", (1, 2), kwargs, b"k" * 32) == encode(
            message, signing_key=b"k" * 32
        )
    with pytest.raises(SerializationError, match=r"t\.add"):
        encode_call(new_task_id(), "t.add", (object(),), {})
