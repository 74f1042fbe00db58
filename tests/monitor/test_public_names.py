"""The public names of the monitoring and dashboard packages are pinned."""

from __future__ import annotations


def test_monitor_and_dashboard_names() -> None:
    import celeriac.dashboard
    import celeriac.monitor

    assert set(celeriac.monitor.__all__) == {
        "Cursor",
        "FailureGroup",
        "MonitorReader",
        "MonitorSettings",
        "Page",
        "Recorder",
        "Series",
        "TaskRecord",
    }
    assert set(celeriac.dashboard.__all__) == {"OpenPolicy", "Policy", "create_app"}
    for module in (celeriac.monitor, celeriac.dashboard):
        for name in module.__all__:
            assert hasattr(module, name)


def test_config_settings_are_validated() -> None:
    import pytest

    from celeriac import Config, ConfigurationError

    c = Config()
    assert c.monitor_events is True and c.monitor_max_entries == 1_000_000
    for name, bad in [
        ("monitor_events", "yes"),
        ("monitor_max_entries", 0),
        ("monitor_retention_days", -1),
        ("monitor_redact", "password"),
    ]:
        with pytest.raises(ConfigurationError, match=name):
            setattr(c, name, bad)
    assert Config.from_env({"CELERIAC_MONITOR_EVENTS": "false"}).monitor_events is False
