"""Fuzzing what a worker reads from Redis: the message decoder and the executor's ``prepare``, the
stream entries a fetch returns (any field names), and the dead-letter entries a listing reads.

Documented outcomes only: ``decode`` returns a Message or raises DecodeError; ``prepare`` returns a
Job or an Outcome (never raises); and for any Job, deciding its outcome (success, failure, retry)
never raises either, so no bad message can stall the worker's settle loop. Parsing a fetched entry
or a dead letter never raises: every entry becomes a delivery (to run or dead-letter) or a listing.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celeriac import Celeriac, DecodeError, Retry, SerializationError
from celeriac.broker.redis import _parse_dead_letters, _parse_entries
from celeriac.execution import Execution, Job, Outcome
from celeriac.message import SIGNED_MESSAGE, Message, decode, encode, peek, sign

KEY = b"k" * 32
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_ENTRIES = settings(FUZZ, max_examples=150)  # whole entries: each example holds several envelopes

# any value msgpack can carry (what a hostile or buggy producer can put in any field)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(scalars, inner, max_size=4),
    max_leaves=12,
)
option_keys = st.sampled_from(["r", "e", "x", "ir", "mr", "al", "rx", "ro", "pa", "ct", "tl", "stl", "zz"])
task_names = st.sampled_from(["fz.add", "fz.kw", "fz.unknown", ""]) | st.text(max_size=10)
ids = st.binary(min_size=16, max_size=16) | st.text(max_size=40) | values


@st.composite
def envelopes(draw: Any) -> bytes:
    """Structurally plausible messages with wrong contents in any field."""
    fields: list[Any] = [
        draw(st.sampled_from([1, 1, 1, 0, 2, "1"])),
        draw(ids),
        draw(task_names),
        draw(st.lists(values, max_size=4) | values),
    ]
    if draw(st.booleans()):
        fields.append(draw(st.dictionaries(st.text(max_size=5) | scalars, values, max_size=3) | values))
        if draw(st.booleans()):
            fields.append(draw(st.dictionaries(option_keys | scalars, values, max_size=5) | values))
    return msgpack.packb(fields, use_bin_type=draw(st.booleans()))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def app() -> Celeriac:
    app = Celeriac("fz", broker="memory://", result_backend="memory://", task_ignore_result=False)

    @app.task(name="fz.add")
    def add(x: Any = 0, y: Any = 0) -> Any:
        return x

    @app.task(name="fz.kw", bind=True)
    def kw(self: Any, *args: Any, **kwargs: Any) -> Any:
        return args

    return app


@pytest.fixture(scope="module")
def signed_app() -> Celeriac:
    app = Celeriac("fz", broker="memory://", result_backend="memory://", message_signing_key=KEY)
    app.task(name="fz.add")(lambda *a, **k: None)
    return app


def check_decode(data: bytes, **options: Any) -> None:
    try:
        message = decode(data, **options)
    except DecodeError:
        return
    assert isinstance(message, Message)


def check_prepare(app: Celeriac, data: bytes) -> None:
    out = Execution(app).prepare(data, queue="q", delivery=1)
    assert isinstance(out, (Job, Outcome))
    if isinstance(out, Outcome):
        assert out.kind in ("dead", "ack")
        if out.kind == "dead":
            assert out.reason
        return
    # a decoded message whose task exists: every way it can end must produce an outcome
    for outcome in (
        Execution(app).finish(out, value=out.message.args),
        Execution(app).finish(out, exc=ValueError("boom")),
        Execution(app).finish(out, exc=TypeError("bad call")),
        Execution(app).finish(out, exc=Retry(countdown_s=1.0)),
        Execution(app).finish(out, exc=Retry(countdown_s=None)),
    ):
        assert outcome.kind in ("ack", "retry", "dead")
        if outcome.kind == "retry":
            assert decode(outcome.retry_data).retries == out.message.retries + 1


@FUZZ
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)
    check_decode(data, signing_keys=[KEY], accept_content=("msgpack", "pickle"))


@FUZZ
@given(st.binary(max_size=120))
def test_decode_of_arbitrary_bytes_behind_a_signature_header(data: bytes) -> None:
    check_decode(SIGNED_MESSAGE + data)
    check_decode(SIGNED_MESSAGE + data, signing_keys=[KEY])
    check_decode(sign(data, KEY), signing_keys=[KEY])  # validly signed garbage


@FUZZ
@given(envelopes())
def test_decode_of_wrong_envelopes(data: bytes) -> None:
    check_decode(data)
    check_decode(data, accept_content=("msgpack", "pickle"))


@FUZZ
@given(st.binary(max_size=200) | envelopes())
def test_prepare_never_raises(app: Celeriac, data: bytes) -> None:
    check_prepare(app, data)


@FUZZ
@given(envelopes())
def test_prepare_with_signing_never_raises(signed_app: Celeriac, data: bytes) -> None:
    check_prepare(signed_app, data)
    check_prepare(signed_app, sign(data, KEY))
    out = Execution(signed_app).prepare(data)
    assert isinstance(out, Outcome) and out.kind == "dead"  # unsigned: refused, whatever it holds


@FUZZ
@given(
    st.lists(values, max_size=3),
    st.dictionaries(st.text(max_size=5), values, max_size=3),
    st.integers(min_value=0, max_value=2**62),
)
def test_valid_messages_round_trip(args: list[Any], kwargs: dict[str, Any], retries: int) -> None:
    try:
        data = encode(Message("id-1", "fz.add", tuple(args), kwargs, retries=retries))
    except SerializationError:  # a value msgpack cannot pack: refused at send, as documented
        return
    assert decode(data).retries == retries


def test_integer_options_beyond_64_bits_are_refused_not_crashed_on_retry(app: Celeriac) -> None:
    data = msgpack.packb([1, "id-1", "fz.add", [], {}, {"r": 2**64 - 1}])
    out = Execution(app).prepare(data)
    assert isinstance(out, Outcome) and "bad option r" in out.reason
    data = msgpack.packb([1, "id-1", "fz.add", [], {}, {"rx": float("nan")}])
    out = Execution(app).prepare(data)
    assert isinstance(out, Outcome) and "bad option rx" in out.reason


entry_ids = st.from_regex(rb"\A[0-9]{1,13}-[0-9]{1,5}\Z")  # what Redis makes: ms-sequence
field_names = st.sampled_from([b"m", b"M", b"message", b"reason", b"time", b""]) | st.binary(max_size=8)
field_values = st.binary(max_size=40) | envelopes() | st.sampled_from([b"0", b"-1", b"1e3", b"\xff\xfe"])


@FUZZ_ENTRIES
@given(
    st.lists(
        st.tuples(entry_ids, st.lists(st.tuples(field_names, field_values), max_size=4)),
        max_size=5,
    )
)
def test_fetched_entries_with_any_fields_become_deliveries(app: Celeriac, entries: list[Any]) -> None:
    raw = [(entry_id, [x for pair in fields for x in pair]) for entry_id, fields in entries]
    deliveries = _parse_entries("q", raw)
    assert len(deliveries) == sum(1 for _, fields in entries if fields)  # deleted entries are skipped
    for d, (_, fields) in zip(deliveries, [e for e in entries if e[1]]):
        assert d.data == next((v for k, v in fields if k == b"m"), b"")  # no "m" field: b"" (undecodable)
        check_prepare(app, d.data)


@FUZZ_ENTRIES
@given(st.lists(st.tuples(entry_ids, st.dictionaries(field_names, field_values, max_size=4)), max_size=5))
def test_dead_letter_listing_of_any_entries(entries: list[Any]) -> None:
    letters = _parse_dead_letters(entries)
    assert len(letters) == len(entries)
    for letter, (_, fields) in zip(letters, entries):
        assert letter.data == fields.get(b"m", b"")
        assert isinstance(letter.reason, str) and isinstance(letter.task_id, str) and letter.time_ms >= 0


@FUZZ
@given(st.binary(max_size=200) | envelopes())
def test_peek_for_listings_never_raises(data: bytes) -> None:
    found = peek(data)
    assert found is None or all(isinstance(x, str) for x in found)
