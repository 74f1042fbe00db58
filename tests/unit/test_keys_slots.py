"""Keys that one atomic script touches share a Redis Cluster hash slot (computed as Redis does)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from celeriac._redis.keys import KeySchema, hash_tag, slot_mate


@pytest.mark.parametrize(
    "task_id",
    ["3f2c0d4e-1a2b-4c3d-8e9f-000000000001", "user-id", "a{b}c", "{}x", "x{", "}{y}", "{{z}}", "}x", "}"],
)
def test_a_progress_key_is_in_its_result_keys_slot(task_id: str) -> None:
    keys = KeySchema("celeriac")  # a key prefix has no braces (config refuses them)
    result, progress = keys.result(task_id), keys.progress(task_id)
    assert progress != result
    assert key_slot(result.encode()) == key_slot(progress.encode())


def test_hash_tag_follows_redis_rule() -> None:
    assert hash_tag("a{b}c") == "b" and hash_tag("a{}b}") is None and hash_tag("abc") is None
    assert hash_tag("{{z}}") == "{z"
    assert slot_mate("celeriac", "celeriac:result:x", "progress") == "celeriac:{celeriac:result:x}:progress"
    assert slot_mate("celeriac", "celeriac:result:a{b}", "progress") == "celeriac:result:a{b}:progress"


def test_every_key_stays_under_the_prefix() -> None:  # ACL key patterns (~celeriac:*) cover them
    keys = KeySchema("shop")
    for task_id in ("x", "a{b}c", "}x"):
        assert keys.result(task_id).startswith("shop:") and keys.progress(task_id).startswith("shop:")
