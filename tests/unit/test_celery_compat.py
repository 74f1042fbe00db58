"""A Celery project's code, with ``celery`` replaced by ``celeriac``: settings (every name decided),
the app's configuration methods, import paths, base Task classes with hooks, signals, Celery's JSON
types, Ignore and Reject. In-memory broker; the Redis and real-process versions are in
tests/integration/test_celery_compat_redis.py and tests/cli/test_celery_worker_lines.py."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import celeriac
from celeriac import Celeriac, ConfigurationError
from celeriac.celery_settings import CELERY_SETTINGS, OLD_NAMES, Fixed, Honoured, Refused
from celeriac.config import Config, celery_table

REPO = Path(__file__).resolve().parents[2]


def make(**settings: Any) -> Celeriac:
    return Celeriac("t", broker="memory://", from_env=False, **settings)


# ---- settings ---------------------------------------------------------------------------------------
def test_the_blog_posts_lines_work() -> None:
    app = Celeriac("proj", broker="memory://", backend="memory://", from_env=False)
    app.conf.update(task_ignore_result=True, task_store_errors_even_if_ignored=True, result_expires=43200)
    assert app.conf.result_expires == 43200 and app.conf.result_expires_s == 43200
    assert app.conf.result_backend == "memory://"


def test_honoured_names_read_back_under_celerys_name_with_celerys_units() -> None:
    conf = Config()
    conf.update(
        result_expires=dt.timedelta(hours=1),
        task_time_limit=dt.timedelta(minutes=2),
        task_soft_time_limit=100,
        task_acks_late=False,
        worker_concurrency=8,
        broker_transport_options={"visibility_timeout": 3600, "global_keyprefix": "shop"},
    )
    assert conf["result_expires"] == 3600.0 and conf.result_expires_s == 3600.0
    assert conf.task_time_limit == 120.0 and conf["task_soft_time_limit"] == 100.0
    assert conf["task_acks_late"] is False and "task_acks_late" in conf
    assert conf.worker_concurrency == 8
    assert conf.lease_s == 3600.0 and conf.key_prefix == "shop"  # visibility_timeout -> lease_s
    assert conf.broker_transport_options["visibility_timeout"] == 3600.0
    conf["task_default_queue"] = "q"
    assert conf.get("task_default_queue") == "q" and conf.get("not_a_setting", 5) == 5


def test_every_table_entry_is_decided_and_behaves_as_it_says() -> None:
    probes: list[Any] = [True, False, None, 1, 0, -1, "x", "UTC", "redis", [], {}, ()]
    own = {f.name for f in fields(Config)}
    for name, decided in CELERY_SETTINGS.items():
        if name in own and not isinstance(decided, Honoured):
            continue  # a celeriac setting of that name landed since: it wins (celery_settings.decision)
        if isinstance(decided, Refused):
            with pytest.raises(ConfigurationError, match="not supported by celeriac") as info:
                Config().update({name: True})
            assert decided.reason in str(info.value)
            with pytest.raises(AttributeError):
                getattr(Config(), name)
        elif isinstance(decided, Fixed):
            conf = Config()
            conf.update({name: decided.default})  # the value that says what celeriac does
            assert conf[name] == decided.default
            refused = [p for p in probes if not decided.accepts(p)]
            assert refused, name
            with pytest.raises(ConfigurationError, match=r"only .* is supported"):
                Config().update({name: refused[0]})
        else:
            assert isinstance(decided, Honoured)
            assert decided.note, name


def test_old_upper_case_names_work_or_are_refused_the_same_way() -> None:
    conf = Config()
    conf.update(
        CELERY_ALWAYS_EAGER=True,
        BROKER_URL="memory://",
        CELERY_RESULT_BACKEND="disabled",
        CELERYD_CONCURRENCY=3,
        CELERY_TASK_RESULT_EXPIRES=60,
        CELERYD_MAX_TASKS_PER_CHILD=100,
    )
    assert conf.task_always_eager and conf.CELERY_ALWAYS_EAGER
    assert (conf.broker_url, conf.result_backend, conf.worker_concurrency) == ("memory://", "disabled", 3)
    assert conf.result_expires_s == 60 and conf.worker_max_tasks_per_child == 100
    with pytest.raises(ConfigurationError, match=r"'task_queues'.*not supported"):
        conf.update(CELERY_QUEUES=[])
    for old, new in OLD_NAMES.items():
        assert new in CELERY_SETTINGS or new in {f.name for f in fields(Config)}, (old, new)


def test_unknown_names_are_refused_never_ignored() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting"):
        make(task_acks_lte=True)
    with pytest.raises(ConfigurationError, match="results are stored in Redis only"):
        make(cassandra_servers=["h"])
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        make(broker_transport_options={"max_connections": 20})


def test_same_name_settings_are_celeriac_settings() -> None:
    from celeriac.celery_settings import SAME_NAME

    assert {f.name for f in fields(Config)} >= SAME_NAME


def test_docs_table_is_generated_from_the_decision_table() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    assert celery_table() in text, (
        "docs/configuration.md's Celery table is stale: regenerate it with "
        'python -c "from celeriac.config import celery_table; print(celery_table())"'
    )


def test_task_routes_in_all_of_celerys_forms() -> None:
    def router(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        return {"queue": "big"} if args and args[0] > 100 else None

    app = make(
        task_routes=[
            router,
            {"shop.reports.*": {"queue": "reports"}},
            {"shop.mail": "mail", "shop.*": "shop"},
        ]
    )
    assert app.route("shop.reports.daily") == "reports"
    assert app.route("shop.mail") == "mail"
    assert app.route("shop.other") == "shop"
    assert app.route("shop.other", args=(500,)) == "big"
    assert app.route("misc") == "default"

    @app.task(name="shop.size")
    def size(n: int) -> int:
        return n

    size.delay(1000)
    size.delay(1)
    sent = app.send_many([size.s(1000), size.s(2)])
    assert len(sent) == 2
    assert app.broker.stats("big").ready == 2 and app.broker.stats("shop").ready == 2


def test_accept_content_and_serializers_in_celerys_spellings() -> None:
    app = make(accept_content=["application/json"], task_serializer="json", result_serializer="json")
    assert app.conf.accept_content == ("msgpack", "json") and app.conf.task_serializer == "json"
    app.codec  # noqa: B018 - builds the codec, which checks the serializers agree
    bad = make(task_serializer="msgpack", result_serializer="json")
    with pytest.raises(ConfigurationError, match="result_serializer"):
        bad.codec  # noqa: B018


def test_task_reject_on_worker_lost_false_fails_the_task() -> None:
    from celeriac.exceptions import WorkerLostError
    from celeriac.execution import Execution

    for reject, kind in ((True, "release"), (False, "ack")):
        app = make(task_reject_on_worker_lost=reject)

        @app.task(name="t.x")
        def x() -> None:
            return None

        execution = Execution(app)
        job = execution.prepare(app.codec.encode(x.build_message((), {}, celeriac.task.NO_OPTIONS)))
        assert not isinstance(job, celeriac.execution.Outcome)
        assert execution.finish(job, exc=WorkerLostError("gone")).kind == kind


# ---- app -------------------------------------------------------------------------------------------
@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith(("cfgmod", "discover_")):
            del sys.modules[name]


def test_config_from_object_module_string_namespace_and_envvar(
    pkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pkg / "cfgmod.py").write_text(
        "import os\nbroker_url = 'memory://'\ntask_acks_late = False\nresult_expires = 60\nhelper = 3\n"
    )
    (pkg / "cfgmod_django.py").write_text(
        "DEBUG = True\nCELERY_BROKER_URL = 'memory://'\nCELERY_TASK_ALWAYS_EAGER = True\n"
        "CELERY_ALWAYS_EAGER = True\nCELERY_RESULT_EXPIRES = 30\nINSTALLED_APPS = ['x']\n"
    )
    app = make()
    app.config_from_object("cfgmod")
    assert (app.conf.broker_url, app.conf.task_acks_late, app.conf.result_expires) == ("memory://", False, 60)
    app = make()
    app.config_from_object("cfgmod_django", namespace="CELERY")
    assert app.conf.task_always_eager and app.conf.result_expires == 30
    app = make()
    settings = types.SimpleNamespace(CELERY_TASK_DEFAULT_QUEUE="dj", OTHER=1)
    holder = types.ModuleType("cfgmod_holder")
    holder.settings = settings  # type: ignore[attr-defined]
    sys.modules["cfgmod_holder"] = holder
    app.config_from_object("cfgmod_holder:settings", namespace="CELERY")
    assert app.conf.task_default_queue == "dj"
    monkeypatch.setenv("CFG_MODULE", "cfgmod")
    app = make()
    assert app.config_from_envvar("CFG_MODULE") and app.conf.result_expires == 60
    with pytest.raises(ConfigurationError, match="cannot import"):
        app.config_from_object("cfgmod_missing")
    app.config_from_object("cfgmod_missing", silent=True)


def test_include_and_autodiscover_tasks(pkg: Path) -> None:
    for name in ("discover_a", "discover_b"):
        (pkg / name).mkdir()
        (pkg / name / "__init__.py").write_text("")
    (pkg / "discover_a" / "tasks.py").write_text(
        "from celeriac import shared_task\n@shared_task(name='a.hello')\ndef hello():\n    return 'hi'\n"
    )
    app = make(include=["discover_a.tasks"])
    assert app.conf.include == ("discover_a.tasks",)
    app.autodiscover_tasks(["discover_a", "discover_b"])
    assert "a.hello" not in app.tasks  # lazy: a worker imports them when it starts
    assert app.discover_tasks() == ["discover_a.tasks"]  # discover_b has no tasks module: skipped
    assert "a.hello" in app.tasks


# ---- import paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("celeriac", ["Celery", "shared_task", "Task", "current_app", "current_task", "signature", "states"]),
        ("celeriac.utils.log", ["get_task_logger"]),
        ("celeriac.result", ["AsyncResult"]),
        (
            "celeriac.exceptions",
            [
                "SoftTimeLimitExceeded",
                "TimeLimitExceeded",
                "MaxRetriesExceededError",
                "Retry",
                "Reject",
                "Ignore",
            ],
        ),
        (
            "celeriac.signals",
            [
                "before_task_publish",
                "after_task_publish",
                "task_prerun",
                "task_postrun",
                "task_success",
                "task_failure",
                "task_retry",
                "task_revoked",
                "task_rejected",
                "worker_init",
                "worker_process_init",
                "worker_ready",
                "worker_shutdown",
                "setup_logging",
            ],
        ),
        ("celeriac.states", ["SUCCESS", "FAILURE", "PENDING", "STARTED", "RETRY", "READY_STATES"]),
    ],
)
def test_celerys_import_paths(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name), f"{module}.{name}"


def test_current_app_current_task_and_signature() -> None:
    app = make(task_always_eager=True)
    assert celeriac.current_app.main == "t"
    seen: list[str] = []

    @app.task(name="t.who")
    def who() -> str:
        seen.append(celeriac.current_task.request.id)
        return celeriac.current_task.name

    assert not celeriac.current_task
    result = who.delay()
    assert result.get() == "t.who" and seen == [result.id]
    assert celeriac.signature("t.who").delay().get() == "t.who"


# ---- task classes and signals --------------------------------------------------------------------------
def test_base_task_hooks_class_defaults_and_signals_in_eager_mode() -> None:
    from celeriac import signals

    app = make(task_always_eager=True)
    calls: list[tuple[Any, ...]] = []

    class Base(app.Task):  # type: ignore[name-defined,misc]
        autoretry_for = (KeyError,)
        max_retries = 2
        default_retry_delay = 0

        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            calls.append(("before_start", args))

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            calls.append(("on_success", retval))

        def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            calls.append(("on_retry", type(exc).__name__))

        def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            calls.append(("on_failure", type(exc).__name__, "KeyError" in str(einfo)))

        def after_return(
            self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            calls.append(("after_return", status))

    @app.task(base=Base, name="t.double")
    def double(x: int) -> int:
        return x * 2

    @app.task(base=Base, name="t.flaky")
    def flaky() -> None:
        raise KeyError("k")

    received: list[tuple[str, Any]] = []

    def on(signal: Any, sender: Any = None, **kw: Any) -> None:
        received.append((signal.name, kw.get("state") or kw.get("exception") or kw.get("result")))

    for sig in (
        signals.task_prerun,
        signals.task_postrun,
        signals.task_success,
        signals.task_failure,
        signals.task_retry,
    ):
        sig.connect(on)
    try:
        assert double.max_retries == 2 and double.autoretry_for == (KeyError,)
        assert double.delay(4).get() == 8
        assert calls == [("before_start", (4,)), ("on_success", 8), ("after_return", "SUCCESS")]
        calls.clear()
        assert flaky.delay().state == "FAILURE"
    finally:
        for sig in (
            signals.task_prerun,
            signals.task_postrun,
            signals.task_success,
            signals.task_failure,
            signals.task_retry,
        ):
            sig.disconnect(on)
    assert [c[0] for c in calls].count("on_retry") == 2  # retried twice (max_retries=2), then failed
    assert calls[-2] == ("on_failure", "KeyError", True) and calls[-1] == ("after_return", "FAILURE")
    names = [n for n, _ in received]
    assert names[:3] == ["task_prerun", "task_success", "task_postrun"]
    assert names.count("task_retry") == 2 and names.count("task_failure") == 1
    assert not signals.ACTIVE.run  # disconnected: calls are not wrapped any more


def test_a_hook_that_raises_does_not_change_the_outcome() -> None:
    app = make(task_always_eager=True)

    class Loud(celeriac.Task):  # type: ignore[type-arg]
        def on_success(self, *args: Any) -> None:
            raise RuntimeError("hook bug")

    @app.task(base=Loud, name="t.one", ignore_result=False)
    def one() -> int:
        return 1

    assert one.delay().get() == 1


def test_publish_signals_and_receiver_errors_are_contained() -> None:
    from celeriac.signals import after_task_publish, before_task_publish

    app = make()

    @app.task(name="t.pub")
    def pub(x: int) -> int:
        return x

    seen: list[tuple[str, Any, Any]] = []

    @before_task_publish.connect
    def before(sender: Any = None, headers: Any = None, routing_key: Any = None, **kw: Any) -> None:
        seen.append(("before", sender, headers["id"]))
        raise RuntimeError("receiver bug")  # logged; the send goes on

    @after_task_publish.connect(sender="t.pub")
    def after(sender: Any = None, headers: Any = None, routing_key: Any = None, **kw: Any) -> None:
        seen.append(("after", routing_key, headers["task"]))

    try:
        result = pub.delay(1)
        app.send_many([pub.s(2)])
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after, sender="t.pub")
    assert seen[0] == ("before", "t.pub", result.id) and seen[1] == ("after", "default", "t.pub")
    assert len(seen) == 4 and app.broker.stats("default").ready == 2


def test_ignore_and_reject_behave_as_in_celery() -> None:
    from celeriac.exceptions import Ignore, Reject
    from celeriac.execution import Execution, Outcome
    from celeriac.task import NO_OPTIONS

    app = make()

    @app.task(name="t.ign")
    def ign() -> None:
        raise Ignore()

    execution = Execution(app)

    def finish(exc: Exception) -> Outcome:
        job = execution.prepare(app.codec.encode(ign.build_message((), {}, NO_OPTIONS)))
        assert not isinstance(job, Outcome)
        return execution.finish(job, exc=exc)

    ignored = finish(Ignore())
    assert (ignored.kind, ignored.store, ignored.state) == ("ack", None, None)  # nothing recorded
    assert finish(Reject("bad", requeue=False)).kind == "dead"
    assert finish(Reject("later", requeue=True)).kind == "release"
    app.conf.task_always_eager = True
    assert ign.delay().state == "IGNORED"


def test_celerys_json_types_round_trip_in_both_content_types() -> None:
    from celeriac.message import decode
    from celeriac.record import ResultRecord, decode_record, encode_record
    from celeriac.states import TaskState

    values = [
        dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2026, 1, 2),
        dt.date(2026, 1, 2),
        dt.time(3, 4, 5, 6),
        dt.timedelta(days=-1, seconds=5, microseconds=7),
        uuid.uuid4(),
        Decimal("-1.000000000000000000001"),
    ]
    for serializer in ("msgpack", "json"):
        app = make(task_serializer=serializer)

        @app.task(name=f"t.echo_{serializer}")
        def echo(*a: Any, **k: Any) -> Any:
            return a

        _, data, _ = app._prepare(
            echo.name, tuple(values), {"when": values[0]}, celeriac.task.NO_OPTIONS, echo
        )
        message = decode(data)
        assert (message.serializer == "json") == (serializer == "json")
        assert list(message.args) == values and message.kwargs == {"when": values[0]}
        for as_json in (False, True):
            record = decode_record(
                "i", encode_record(ResultRecord("i", TaskState.SUCCESS, values), as_json=as_json)
            )
            assert record.value == values


def test_broker_pool_limit_bounds_the_producer_pool() -> None:
    app = Celeriac("x", broker="redis://127.0.0.1:1/0", from_env=False, broker_pool_limit=3)
    broker: Any = app.broker
    # threads' own send connections (at most 1) and the pool (2) share the 3
    assert broker.sync.connection_pool.max_connections + broker._own_limit == 3
    app.conf.broker_pool_limit = None  # Celery's "no limit"
    assert app.broker.sync_max_connections is None  # type: ignore[attr-defined]
    app.close()


def test_config_normalizes_exactly_the_names_the_table_converts() -> None:
    """Config sets its own names without the table (celery_settings loads for Celery's names only):
    the celeriac names the table converts must be the ones Config normalizes itself."""
    from celeriac.celery_settings import decision
    from celeriac.config import _CHECKS, NORMALIZED

    converted = {
        name
        for name in _CHECKS
        if isinstance(d := decision(name, _CHECKS), Honoured) and (d.convert is not None or d.target != name)
    }
    assert converted == set(NORMALIZED)
