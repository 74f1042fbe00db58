"""How settings reach what is built from them: declared validators, rebuilds on change, injected
objects, aliases and the environment opt-out."""

from __future__ import annotations

from dataclasses import fields

import pytest

from celeriac import Celeriac, ConfigurationError
from celeriac import config as config_module
from celeriac.broker.memory import MemoryBroker
from celeriac.broker.redis import RedisBroker
from celeriac.config import Config, setting
from celeriac.results.memory import MemoryResultBackend
from celeriac.results.redis import RedisResultBackend


def test_every_setting_declares_its_validator() -> None:
    for f in fields(Config):
        assert callable(f.metadata.get("check")), f"{f.name} has no validator"


def test_a_setting_without_a_validator_cannot_be_declared() -> None:
    with pytest.raises(TypeError, match="validator"):
        setting(3)


def test_changing_the_broker_url_after_first_use_rebuilds_the_broker() -> None:
    app = Celeriac("cfg", broker="memory://", result_backend="memory://", from_env=False)
    first = app.broker
    assert isinstance(first, MemoryBroker)
    app.conf.broker_url = "redis://127.0.0.1:1/3"
    assert isinstance(app.broker, RedisBroker) and app.broker.url == "redis://127.0.0.1:1/3"
    app.conf.key_prefix = "other"
    assert app.broker.keys.prefix == "other"  # type: ignore[attr-defined]
    app.conf.result_backend = "redis://127.0.0.1:1/4"
    backend = app.backend
    assert isinstance(backend, RedisResultBackend) and backend.url == "redis://127.0.0.1:1/4"
    app.conf.result_backend = "disabled"
    assert app.backend is None


def test_changing_signing_settings_rebuilds_the_codec() -> None:
    app = Celeriac("cfg", broker="memory://", from_env=False)
    assert app.codec.signing_key is None
    app.conf.message_signing_key = "k" * 32
    assert app.codec.signing_key == b"k" * 32
    app.conf.result_max_bytes = 1234
    assert app.codec.result_max_bytes == 1234


def test_broker_and_result_store_objects_are_used_as_given() -> None:
    broker, backend = MemoryBroker(dead_letter_max=7), MemoryResultBackend()
    app = Celeriac("cfg", broker=broker, result_backend=backend, from_env=False)
    assert app.broker is broker and app.backend is backend
    app.conf.dead_letter_max = 9  # a given broker is not rebuilt from settings it was not built from
    assert app.broker is broker
    app.conf.broker_url = "memory://"  # naming a broker replaces the given one
    assert app.broker is not broker


def test_from_env_false_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERIAC_TASK_ALWAYS_EAGER", "true")
    monkeypatch.setenv("CELERIAC_LEASE_S", "42")
    assert Celeriac("cfg", broker="memory://").conf.task_always_eager is True
    app = Celeriac("cfg", broker="memory://", from_env=False)
    assert app.conf.task_always_eager is False and app.conf.lease_s == 10.0


def test_an_alias_is_one_more_name_for_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # how Celery's names are added: setting(..., aliases=("result_expires",)) fills this table
    monkeypatch.setitem(config_module._ALIASES, "result_expires", "result_expires_s")
    conf = Config.from_env({"CELERIAC_RESULT_EXPIRES": "60"})
    assert conf.result_expires_s == 60.0 and conf.result_expires == 60.0
    conf.result_expires = 30
    assert conf.result_expires_s == 30
    with pytest.raises(ConfigurationError, match="result_expires_s"):
        conf.result_expires = -1
    assert Config.from_env({}, result_expires=5).result_expires_s == 5


def test_a_config_pickles_without_its_apps_listeners() -> None:
    # the process pool sends the settings to its lean fork server: the app must not travel with them
    import pickle

    app = Celeriac("cfg", broker="memory://", from_env=False, lease_s=3)
    copy = pickle.loads(pickle.dumps(app.conf))
    assert copy == app.conf and copy.lease_s == 3
    copy.lease_s = 4  # no listener: the original app is not told
    assert app.conf.lease_s == 3
