"""Every Redis script is a .lua file whose header documents each key it touches, all passed in KEYS."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from importlib import resources

import pytest
import redis

from celeriac._redis.keys import KeySchema
from celeriac._redis.scripts import RECLAIM, SETTLE, source

LUA_DIR = resources.files("celeriac._redis").joinpath("lua")
NAMES = sorted(p.name[:-4] for p in LUA_DIR.iterdir() if p.name.endswith(".lua"))


def test_scripts_exist() -> None:
    assert {"settle", "reclaim", "extend", "promote", "enqueue_delayed", "release"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_header_documents_every_key(name: str) -> None:
    text = source(name)
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    used = set(
        re.findall(
            r"KEYS\[(\d+|[a-z])\]", "\n".join(line for line in text.splitlines() if not line.startswith("--"))
        )
    )
    assert used, f"{name}.lua touches no KEYS"
    for n in used:
        assert f"KEYS[{n}]" in header, f"{name}.lua uses KEYS[{n}] without documenting it"


@pytest.mark.parametrize("name", NAMES)
def test_no_key_is_built_inside_the_script(name: str) -> None:
    body = "\n".join(line for line in source(name).splitlines() if not line.startswith("--"))
    # a key name built from strings inside Lua would break Redis Cluster routing
    assert "celeriac:" not in body
    for command, rest in re.findall(r"redis\.call\('(\w+)',?\s*([^\)]*)", body):
        args = [a.strip() for a in rest.split(",")]
        if command in {"TIME", "PUBLISH"}:  # no key; PUBLISH takes a channel
            continue
        if command in {"XINFO", "XGROUP"}:  # a subcommand comes before the key
            args = args[1:]
        if command == "XREADGROUP":  # the keys follow STREAMS
            args = args[args.index("'STREAMS'") + 1 :]
        assert args[0].startswith("KEYS["), f"{name}.lua: {command} on {args[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_unpack_is_always_the_last_argument(name: str) -> None:
    # Lua passes only the first value of `unpack(t)` when another argument follows it: extend.lua once
    # renewed one lease per call that way, and the other running tasks were reclaimed and run again
    body = "\n".join(line for line in source(name).splitlines() if not line.startswith("--"))
    assert not re.search(r"unpack\([^()]*\)\s*,", body), f"{name}.lua: unpack(...) followed by an argument"


# ---- settle.lua: results are fenced like acks (needs a private Redis) ---------------------------------
@pytest.fixture
def lua(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


K = KeySchema("lua").queue("q")


def _take(client: redis.Redis, consumer: str, n: int) -> list[str]:
    """Add ``n`` messages and deliver them to ``consumer``; their entry ids."""
    client.xgroup_create(K.ready, "celeriac", id="0", mkstream=True)
    for i in range(n):
        client.xadd(K.ready, {"m": f"m{i}"})
    reply = client.xreadgroup("celeriac", consumer, {K.ready: ">"}, count=n)
    return [e[0].decode() for e in reply[0][1]]


def _settle(
    client: redis.Redis,
    consumer: str,
    acks: list[tuple[str, int]],
    results: Sequence[tuple[str, str, int, bytes]] = (),
    records: Sequence[object] = (),
) -> list[str]:
    """Call settle.lua with results (task id, entry id, deliveries, payload) for the listed acks."""
    keys = [K.ready, K.delayed, K.dead, K.reclaimed] + [f"lua:result:{t}" for t, _, _, _ in results]
    args: list[object] = ["celeriac", consumer, 100, 10, K.wake, " ".join(f"{i} {n}" for i, n in acks)]
    args.append(len(results))
    for _task, entry, deliveries, payload in results:
        args += [entry, deliveries, 60_000, payload]
    args += list(records)
    return [x.decode() for x in SETTLE(client, keys, args)]


def _result(client: redis.Redis, task: str) -> list[bytes]:
    return client.lrange(f"lua:result:{task}", 0, -1)  # type: ignore[return-value]


@pytest.mark.redis
def test_settle_writes_the_results_of_a_never_reclaimed_consumer_without_reading_its_pel(
    lua: redis.Redis,
) -> None:
    a, b = _take(lua, "old", 2)
    lua.config_resetstat()
    assert _settle(lua, "old", [(a, 1), (b, 1)], [("ta", a, 1, b"ra"), ("tb", b, 1, b"rb")]) == []
    assert (_result(lua, "ta"), _result(lua, "tb")) == ([b"ra"], [b"rb"])
    assert 0 < lua.pttl("lua:result:ta") <= 60_000
    # owned by construction: one XPENDING summary (the trim), no pending-list read per consumer
    stats = lua.info("commandstats")
    assert stats["cmdstat_xpending"]["calls"] == 1
    assert lua.xpending(K.ready, "celeriac")["pending"] == 0


@pytest.mark.redis
def test_settle_writes_no_result_for_a_delivery_reclaimed_by_another_consumer(lua: redis.Redis) -> None:
    a, b = _take(lua, "old", 2)
    lua.rpush("lua:result:ta", b"from-new")  # the new owner recorded its outcome first
    RECLAIM(lua, [K.ready, K.dead, K.reclaimed], ["celeriac", "new", 0, 1, 5, 10])  # takes a only
    assert lua.hget(K.reclaimed, "old") == b"1"
    fenced = _settle(lua, "old", [(a, 1), (b, 1)], [("ta", a, 1, b"late"), ("tb", b, 1, b"rb")])
    assert fenced == [a]
    assert _result(lua, "ta") == [b"from-new"]  # not overwritten
    assert _result(lua, "tb") == [b"rb"]  # still owned: written
    pending = lua.xpending_range(K.ready, "celeriac", "-", "+", 10)
    assert [(p["message_id"].decode(), p["consumer"].decode()) for p in pending] == [(a, "new")]


@pytest.mark.redis
def test_settle_writes_no_result_for_a_stale_delivery_count(lua: redis.Redis) -> None:
    (a,) = _take(lua, "old", 1)
    RECLAIM(lua, [K.ready, K.dead, K.reclaimed], ["celeriac", "old", 0, 1, 5, 10])  # itself, count 2
    assert _settle(lua, "old", [(a, 1)], [("ta", a, 1, b"stale")]) == [a]
    assert _result(lua, "ta") == []
    assert _settle(lua, "old", [(a, 2)], [("ta", a, 2, b"fresh")]) == []
    assert _result(lua, "ta") == [b"fresh"]


@pytest.mark.redis
def test_settle_results_with_retry_and_dead_records_are_checked(lua: redis.Redis) -> None:
    a, b, c = _take(lua, "old", 3)
    RECLAIM(lua, [K.ready, K.dead, K.reclaimed], ["celeriac", "new", 0, 1, 5, 10])  # takes a
    records = ["r", a, 1, 1000, "", b"retry-a", "d", b, 1, b"msg-b", "bad", "r", c, 1, 1000, "", b"retry-c"]
    results = [("ta", a, 1, b"late"), ("tb", b, 1, b"failed"), ("tc", c, 1, b"retrying")]
    assert _settle(lua, "old", [], results, records) == [a]
    assert (_result(lua, "ta"), _result(lua, "tb"), _result(lua, "tc")) == ([], [b"failed"], [b"retrying"])
    assert lua.zrange(K.delayed, 0, -1) == [b"retry-c"]  # a's retry was fenced too
    assert lua.xlen(K.dead) == 1


@pytest.mark.redis
def test_settle_without_results_is_unchanged(lua: redis.Redis) -> None:
    a, b = _take(lua, "old", 2)
    lua.config_resetstat()
    assert _settle(lua, "old", [(a, 1), (b, 1)]) == []
    stats = lua.info("commandstats")
    # HEXISTS, XACK, XPENDING summary, XINFO GROUPS, XTRIM, XDEL: no list or key command for results
    assert not any(k in stats for k in ("cmdstat_rpush", "cmdstat_ltrim", "cmdstat_pexpire"))
    assert lua.xlen(K.ready) == 0


def test_a_script_keeps_its_sha_not_its_source() -> None:
    """Only the SHA stays in memory; the source is read from the .lua file when Redis asks for it."""
    import dataclasses
    import hashlib

    from celeriac.monitor.script import RECORD

    for script, package in ((SETTLE, "celeriac._redis"), (RECORD, "celeriac.monitor")):
        assert "text" not in {f.name for f in dataclasses.fields(script)}
        text = resources.files(package).joinpath("lua").joinpath(f"{script.name}.lua").read_text("utf-8")
        assert script.text == text and script.sha == hashlib.sha1(text.encode()).hexdigest()


def test_a_script_whose_file_changed_under_the_process_says_so() -> None:
    """Redis lost its scripts (a restart) after celeriac was upgraded in place: the file read back is
    not the script the process calls, and loading it would loop on NOSCRIPT; the error says what to do."""
    import dataclasses

    from celeriac.exceptions import BrokerError

    stale = dataclasses.replace(SETTLE, sha="0" * 40)
    with pytest.raises(BrokerError, match=r"settle\.lua changed on disk .* restart the process"):
        _ = stale.text
