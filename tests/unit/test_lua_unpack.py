"""No Redis script unpacks an unbounded list: Lua's ``unpack()`` refuses more than about 8,000 values
(LUAI_MAXCSTACK), so ``XDEL key unpack(ids)`` over a whole queue failed with "too many results to
unpack" (``celeriac purge`` on a queue of 9,000 messages did). Every ``unpack`` must be over a table
built by a chunk loop of at most :data:`MAX_CHUNK` values.

The static rule, checked on every ``.lua`` file shipped in the package (found wherever it lives):

* each ``unpack(x)`` sits inside a chunk loop ``for first = 1, #list, N do`` with N <= MAX_CHUNK (its
  header on the same line or at most five lines above), and
* the table unpacked is filled by ``for i = first, math.min(first + N - 1, #list)``: never more than
  N values, whatever the list's length.

The scripts that unpack are then run at scale (more values than Lua could unpack at once) against a
real Redis: see the tests below and ``tests/integration/test_admin_scale.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import celeriac

MAX_CHUNK = 1000
PACKAGE = Path(celeriac.__file__).parent
SCRIPTS = sorted(PACKAGE.rglob("*.lua"))
UNPACK = re.compile(r"\bunpack\s*\(")
CHUNK_LOOP = re.compile(r"\bfor\s+(\w+)\s*=\s*1\s*,\s*#[\w.\[\]]+\s*,\s*(\d+)\s+do\b")
CHUNK_FILL = re.compile(
    r"\bfor\s+\w+\s*=\s*(\w+)\s*,\s*math\.min\(\s*(\w+)\s*\+\s*(\d+)\s*,\s*#[\w.\[\]]+\s*\)"
)


def unpack_violations(lines: list[str]) -> list[str]:
    """Each ``unpack`` that is not over a bounded chunk, described (empty: the script is fine)."""
    lines = [line.split("--", 1)[0] for line in lines]  # comments blanked, line numbers kept
    fills = {
        (var, int(last) + 1)
        for line in lines
        for start, var, last in CHUNK_FILL.findall(line)
        if start == var
    }
    problems = []
    for n, line in enumerate(lines):
        if not UNPACK.search(line):
            continue
        loops = [m for above in lines[max(0, n - 5) : n + 1] for m in CHUNK_LOOP.finditer(above)]
        if not loops:
            problems.append(f"line {n + 1}: unpack outside a chunk loop `for first = 1, #list, N do`")
            continue
        var, step = loops[-1].group(1), int(loops[-1].group(2))
        if step > MAX_CHUNK:
            problems.append(f"line {n + 1}: chunks of {step} values (at most {MAX_CHUNK})")
        elif (var, step) not in fills:
            problems.append(
                f"line {n + 1}: the unpacked table is not filled by "
                f"`for i = {var}, math.min({var} + {step - 1}, #list)`"
            )
    return problems


def test_scripts_are_found() -> None:
    assert {"settle.lua", "purge_ready.lua", "extend.lua"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_script_unpacks_an_unbounded_list(path: Path) -> None:
    problems = unpack_violations(path.read_text("utf-8").splitlines())
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_rule_catches_an_unbounded_unpack() -> None:
    # the rule itself: the bug as it was, and near misses
    bug = [
        "local ids = {}",
        "for _, e in ipairs(entries) do table.insert(ids, e[1]) end",
        "if #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end",
    ]
    assert unpack_violations(bug)
    too_big = [
        "for first = 1, #ids, 10000 do",
        "  local c = {}",
        "  for i = first, math.min(first + 9999, #ids) do c[#c + 1] = ids[i] end",
        "  redis.call('XDEL', KEYS[1], unpack(c))",
        "end",
    ]
    assert "at most" in unpack_violations(too_big)[0]
    unfilled = ["for first = 1, #ids, 1000 do", "  redis.call('XDEL', KEYS[1], unpack(ids))", "end"]
    assert "not filled" in unpack_violations(unfilled)[0]
    good = [
        "for first = 1, #ids, 1000 do",
        "  local c = {}",
        "  for i = first, math.min(first + 999, #ids) do c[#c + 1] = ids[i] end",
        "  redis.call('XDEL', KEYS[1], unpack(c))",
        "end",
    ]
    assert unpack_violations(good) == []
    assert unpack_violations(["-- a comment about unpack(ids)"]) == []


# ---- the scripts that unpack, at more than Lua could unpack at once (needs a private Redis) ----------
N = 9_500  # > ~8,000 (LUAI_MAXCSTACK)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _script(name: str) -> str:
    return next(p for p in SCRIPTS if p.name == name).read_text("utf-8")


def _fill(client: redis.Redis, key: str, n: int) -> None:
    client.xgroup_create(key, "celeriac", id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(key, {"m": f"m{i}"})
    pipe.execute()


@pytest.mark.redis
def test_purge_ready_deletes_more_than_lua_can_unpack_in_one_call(client: redis.Redis) -> None:
    _fill(client, "t:{q}:ready", N)
    deleted = client.eval(_script("purge_ready.lua"), 1, "t:{q}:ready", "celeriac", 10_000)
    assert deleted == N
    assert client.xlen("t:{q}:ready") == 0


def _settle(client: redis.Redis, consumer: str, acks: list[tuple[str, int]]) -> list[bytes]:
    keys = ["t:{q}:ready", "t:{q}:delayed", "t:{q}:dead", "t:{q}:reclaimed"]
    packed = " ".join(f"{i} {n}" for i, n in acks)
    args = ["celeriac", consumer, 2 * N, 10, "t:{q}:wake", packed, 0]
    reply: list[bytes] = client.eval(_script("settle.lua"), len(keys), *keys, *args)
    return reply


@pytest.mark.redis
def test_settle_acks_more_than_lua_can_unpack_in_one_flush(client: redis.Redis) -> None:
    _fill(client, "t:{q}:ready", N)
    taken = client.xreadgroup("celeriac", "w", {"t:{q}:ready": ">"}, count=N)
    ids = [e[0].decode() for e in taken[0][1]]
    assert _settle(client, "w", [(i, 1) for i in ids]) == []
    assert client.xpending("t:{q}:ready", "celeriac")["pending"] == 0
    assert client.xlen("t:{q}:ready") == 0


@pytest.mark.redis
def test_settle_deletes_more_out_of_order_acks_than_lua_can_unpack(client: redis.Redis) -> None:
    # the oldest delivery still runs: every other ack is newer and is deleted one by one (XDEL newer)
    _fill(client, "t:{q}:ready", N + 1)
    taken = client.xreadgroup("celeriac", "w", {"t:{q}:ready": ">"}, count=N + 1)
    ids = [e[0].decode() for e in taken[0][1]]
    client.hset("t:{q}:reclaimed", "w", 1)  # the precise (pending-list) path as well
    assert _settle(client, "w", [(i, 1) for i in ids[1:]]) == []
    assert client.xpending("t:{q}:ready", "celeriac")["pending"] == 1
    assert client.xlen("t:{q}:ready") == 1
