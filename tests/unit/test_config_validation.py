"""Every setting refuses bad values with a message naming the setting, set in code or in the environment.

``BAD_VALUES`` must list every field of ``Config``: a new setting without a row here fails
``test_every_setting_has_bad_value_cases``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from celeriac import Celeriac, ConfigurationError
from celeriac.config import _DEFAULTS, Config

BAD_VALUES: dict[str, list[Any]] = {
    "queue_shards": [{"default": 0}, {"default": "8"}, {"a~b": 2}, ["default"]],
    "broker_wait_replicas": [-1, True, "1"],
    "broker_wait_timeout_s": [0, -1.0],
    "broker_url": [
        "http://host",
        "redis://host:port/0",
        "redis://host/x",
        "redis://",
        42,
        None,
        b"redis://h",
    ],
    "result_backend": ["ftp://host", "redis://host/db", 3],
    "key_prefix": ["", "has space", "{tag}", None, 1],
    "task_default_queue": ["", "a b", "q{1}", "line\nbreak", None],
    "task_routes": [["a", "b"], {"a.*": 3}, {"a.*": ""}, {"a.*": "bad queue"}, {1: "q"}],
    "task_ignore_result": ["yes", 1, None],
    "task_store_errors_even_if_ignored": ["no", 0],
    "task_acks_late": ["true", 1],
    "task_always_eager": ["false", None],
    "task_eager_propagates": [1.0, "1"],
    "result_expires_s": [0, -1, "60", True, None],
    "max_message_bytes": [0, -5, 1.5, "1024", True],
    "max_deliveries": [0, 2.5, None, False],
    "lease_s": [0, -0.1, "10"],
    "dead_letter_max": [0, 10.0, "many"],
    "worker_ttl_s": [0, None, "10s"],
    "worker_shutdown_grace_s": [-1, "60"],
    "worker_fetch_max": [0, 1.5, "500"],
    "task_default_priority": [-1, 10, 1.5, True, "0"],
    "unique_default_s": [0, -1, "60", True],
    "revoke_expires_s": [0, -1, "60", None],
    "revoked_max": [0, 1.5, "10"],
    "progress_interval_s": [-0.1, "0.1", float("nan")],
    "worker_queue_modules": [
        ["a"],
        {"q": "shop.tasks"},
        {"q": ["bad module"]},
        {"bad queue": []},
        {"q": [1]},
    ],
    "result_max_bytes": [0, -1, 2.5, "1MiB", True],
    "accept_content": ["msgpack", ["yaml"], None, ["msgpack", 1]],
    "task_serializer": ["yaml", "", None, "Pickle"],
    "message_signing_key": ["short", b"short", 123, ["k" * 32]],
    "message_signing_keys": ["k" * 32, ["short"], [None], None, 5],
    "monitor_events": ["yes", 1, None],
    "monitor_max_entries": [0, -1, 1.5, "1000"],
    "monitor_max_failures": [0, 2.5, None],
    "monitor_retention_days": [0, -1, "7"],
    "monitor_max_arg_chars": [0, "1000"],
    "monitor_redact": ["password", [""], [1], None],
    "task_time_limit": [0, -1, "60", True],
    "task_soft_time_limit": [0, "1s", False],
    "task_reject_on_worker_lost": ["no", 1],
    "worker_concurrency": [0, 1.5, "4", True],
    "worker_prefetch_multiplier": [-1, 1.5, "4"],
    "worker_max_tasks_per_child": [0, 2.5, "10"],
    "worker_max_memory_per_child": [0, -1, "200MB"],
    "broker_pool_limit": [0, -1, "10"],
    "imports": ["shop.tasks", ["bad module"], [1]],
    "include": ["shop.tasks", ["a b"]],
    "result_serializer": ["yaml", ""],
    "timezone": ["Mars/Olympus", 3, "", b"UTC"],
    "enable_utc": ["yes", 1, None],
    "beat_schedule": [["a"], "x", 3, None],
}


def test_every_setting_has_bad_value_cases() -> None:
    names = {f.name for f in fields(Config)}
    missing = names - BAD_VALUES.keys()
    assert not missing, f"add invalid values for the new setting(s) {sorted(missing)} to BAD_VALUES"
    assert not BAD_VALUES.keys() - names


@pytest.mark.parametrize(
    ("setting", "value"), [(name, value) for name, values in BAD_VALUES.items() for value in values]
)
def test_invalid_value_is_refused_naming_the_setting(setting: str, value: Any) -> None:
    conf = Config()
    with pytest.raises(ConfigurationError, match=f"'{setting}'") as info:
        setattr(conf, setting, value)
    assert info.value.setting == setting
    with pytest.raises(ConfigurationError, match=f"'{setting}'"):
        Celeriac("x", **{setting: value})
    assert getattr(conf, setting) == getattr(_DEFAULTS, setting)  # the bad value was not stored


# an environment value of the wrong shape, for every setting whose type is parsed from text
BAD_ENVIRONMENT: dict[str, str] = {
    "task_ignore_result": "maybe",
    "task_acks_late": "2",
    "result_expires_s": "a day",
    "max_message_bytes": "1MiB",
    "max_deliveries": "five",
    "lease_s": "10s",
    "task_routes": "{not json",
    "accept_content": "msgpack,yaml",
    "task_serializer": "yaml",
    "broker_url": "http://example.com",
    "message_signing_key": "short",
    "result_max_bytes": "big",
    "monitor_events": "sometimes",
    "monitor_max_entries": "a million",
}


@pytest.mark.parametrize(("setting", "raw"), sorted(BAD_ENVIRONMENT.items()))
def test_invalid_environment_value_names_the_setting(setting: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        Config.from_env({f"CELERIAC_{setting.upper()}": raw})


def test_every_valid_default_round_trips_through_the_environment() -> None:
    env = {}
    for f in fields(Config):
        value = getattr(_DEFAULTS, f.name)
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, tuple):
            env[f"CELERIAC_{f.name.upper()}"] = ",".join(value)
        else:
            env[f"CELERIAC_{f.name.upper()}"] = str(value)
    conf = Config.from_env(env)
    for f in fields(Config):
        assert getattr(conf, f.name) == getattr(_DEFAULTS, f.name), f.name


def test_a_task_option_error_names_the_task() -> None:
    app = Celeriac("x", broker="memory://")
    with pytest.raises(ConfigurationError, match=r"@app\.task options of x\.f"):
        app.task(name="x.f", no_such_option=1)(lambda: None)


@pytest.mark.parametrize(
    "options", ["mymaster", {"sentinel_kwargs": "pw"}, {"master_name": ""}, {"master_name": 3}]
)
def test_bad_sentinel_transport_options_are_refused(options: Any) -> None:
    with pytest.raises(ConfigurationError, match="broker_transport_options"):
        Config().update(broker_transport_options=options)


def test_sentinel_transport_options_read_back() -> None:
    conf = Config()
    conf.update(broker_transport_options={"master_name": "mymaster", "sentinel_kwargs": {"password": "s"}})
    assert conf.broker_transport_options["master_name"] == "mymaster"
    assert conf.broker_transport_options["sentinel_kwargs"] == {"password": "s"}
