from __future__ import annotations

import pytest

from celeriac import Celeriac, ConfigurationError
from celeriac.config import Config


def test_defaults_differ_from_celery_where_celery_hurts() -> None:
    conf = Config()
    assert conf.task_ignore_result is True
    assert conf.task_acks_late is True
    assert conf.task_store_errors_even_if_ignored is True
    assert conf.result_expires_s == 86_400
    assert conf.max_deliveries == 5
    assert conf.max_message_bytes == 1 << 20


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lease_s", 0),
        ("lease_s", "10"),
        ("max_deliveries", 0),
        ("max_deliveries", 1.5),
        ("task_acks_late", "yes"),
        ("task_default_queue", "has space"),
        ("task_default_queue", "{brace}"),
        ("task_routes", {"a.*": 3}),
        ("broker_url", "http://localhost"),
        ("broker_url", "redis://localhost:notaport/0"),
        ("broker_url", "redis://localhost/x"),
        ("result_expires_s", -1),
    ],
)
def test_invalid_values_name_the_setting(setting: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        Config().update({setting: value})


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Celeriac("x", broker="memory://", task_always_eagerr=True)


def test_assignment_validates() -> None:
    conf = Config()
    with pytest.raises(ConfigurationError, match="lease_s"):
        conf.lease_s = -3


def test_environment_variables_are_read_and_parsed() -> None:
    conf = Config.from_env(
        {
            "CELERIAC_BROKER_URL": "redis://example:6380/2",
            "CELERIAC_TASK_ACKS_LATE": "false",
            "CELERIAC_LEASE_S": "2.5",
            "CELERIAC_MAX_DELIVERIES": "9",
            "CELERIAC_TASK_ROUTES": '{"shop.*": "io"}',
        }
    )
    assert conf.broker_url == "redis://example:6380/2"
    assert conf.task_acks_late is False
    assert conf.lease_s == 2.5
    assert conf.max_deliveries == 9
    assert conf.task_routes == {"shop.*": "io"}


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="CELERIAC_MAX_DELIVERIES"):
        Config.from_env({"CELERIAC_MAX_DELIVERIES": "many"})


def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERIAC_BROKER_URL", "redis://from-env:6379/0")
    assert Celeriac("x", broker="redis://explicit:6379/1").conf.broker_url == "redis://explicit:6379/1"
    assert Celeriac("x").conf.broker_url == "redis://from-env:6379/0"


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Config().update(broker_url="http://user:s3cret@host/0")
    assert "s3cret" not in str(info.value)
