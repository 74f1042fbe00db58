"""Every Celery setting name, decided once: honoured with Celery's meaning and units, or refused.

This table is the one place the decisions live. :class:`~celeriac.config.Config` reads it when a
setting is set or read, ``celeriac check-celery`` asks ``Config`` (so it follows), and the table in
``docs/configuration.md`` is generated from it (``python -c "from celeriac.config import
celery_table; print(celery_table())"``; a test fails when the two differ).

Three kinds of decision:

* :class:`Honoured`: the Celery name is accepted with Celery's meaning and units and stored in the
  celeriac setting ``target`` (converted, e.g. a ``timedelta`` to seconds). It reads back under the
  Celery name as well. A Celery name that *is* a celeriac setting (``task_acks_late``) needs no entry.
* :class:`Fixed`: celeriac always behaves one way. The value that says so is accepted (and read
  back); any other is refused with the reason.
* :class:`Refused`: a :class:`~celeriac.exceptions.ConfigurationError` that says why and what to use.

Why this module is long: it is a table of ~190 Celery settings, one line of reasoning each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._normalize import NORMALIZED, seconds
from .exceptions import ConfigurationError

__all__ = [
    "BACKEND_FAMILIES",
    "CELERY_SETTINGS",
    "OLD_NAMES",
    "SAME_NAME",
    "Fixed",
    "Honoured",
    "Refused",
    "decision",
    "markdown_table",
]


@dataclass(frozen=True)
class Honoured:
    """Accepted with Celery's meaning; stored in ``target`` after ``convert``."""

    target: str
    note: str = ""
    #: Celery's value -> {celeriac setting: value}; default: ``{target: value}``
    convert: Callable[[str, Any], dict[str, Any]] | None = None
    #: read back: a mapping of celeriac settings -> Celery's value; default: the target's value
    read: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Fixed:
    """celeriac always behaves one way: values for which ``ok`` holds are accepted, others refused."""

    default: Any
    note: str
    ok: Callable[[Any], bool] | None = None

    def accepts(self, value: Any) -> bool:
        return self.ok(value) if self.ok is not None else value == self.default


@dataclass(frozen=True)
class Refused:
    """Not supported: ``reason`` says why, and what to use instead."""

    reason: str


Decision = Honoured | Fixed | Refused


# ---- converters (Celery's units -> celeriac's) -------------------------------------------------------
def _normalized(target: str) -> Callable[[str, Any], dict[str, Any]]:
    """What ``Config`` does to a value of its own setting ``target`` (``config.NORMALIZED``: Celery's
    spellings and units); the same whichever name sets it."""

    def convert(name: str, value: Any) -> dict[str, Any]:
        return {target: NORMALIZED[target](name, value)}

    return convert


def _to(target: str, *, optional: bool = False) -> Callable[[str, Any], dict[str, Any]]:
    def convert(name: str, value: Any) -> dict[str, Any]:
        return {target: seconds(name, value, optional=optional)}

    return convert


def _transport_options(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(name, f"must be a dict, got {type(value).__name__}")
    out: dict[str, Any] = {"_transport_options": dict(value)}
    for key, item in value.items():
        if key == "visibility_timeout":
            out["lease_s"] = seconds(f"{name}['visibility_timeout']", item)
        elif key == "global_keyprefix":
            out["key_prefix"] = str(item).rstrip(":_") or "celeriac"
        elif key == "master_name":  # the Sentinel master of a sentinel:// URL (docs/scaling.md)
            if not isinstance(item, str) or not item:
                raise ConfigurationError(f"{name}['master_name']", f"must be a name, got {item!r}")
        elif key == "sentinel_kwargs":  # options of the connections to the Sentinels (a password)
            if not isinstance(item, Mapping):
                raise ConfigurationError(
                    f"{name}['sentinel_kwargs']", "must be a dict (e.g. {'password': ...})"
                )
        elif key in ("fanout_prefix", "fanout_patterns"):
            if item is not True:
                raise ConfigurationError(
                    f"{name}[{key!r}]", "only True is accepted (celeriac has no broadcast queues to share)"
                )
        else:
            raise ConfigurationError(
                f"{name}[{key!r}]",
                "not supported: celeriac understands visibility_timeout (-> lease_s), global_keyprefix "
                "(-> key_prefix), master_name and sentinel_kwargs (Sentinel) and "
                "fanout_prefix/fanout_patterns=True; connection options go in the URL "
                "(?socket_timeout= is not needed: celeriac sets its own timeouts); priorities: priority=",
            )
    return out


def _read_transport(conf: Any) -> Any:
    return {**conf.get("_transport_options", {}), "visibility_timeout": conf["lease_s"]}


def _utc(value: Any) -> bool:
    return value in ("UTC", "Etc/UTC", "utc")


_TASK_OPTION = "set it on the task instead: @app.task({opt}=...) or a base Task class's attribute"
_URL = "put it in the URL (rediss:// for TLS, ?db=, ?username=, ?password=, ssl_* options)"
_AMQP = "AMQP-only; celeriac speaks Redis"
_NO_EXCHANGE = (
    "celeriac has no exchanges or routing keys: a queue is a name, created on first use; route with "
    "task_routes or queue="
)
_EVENTS = (
    "celeriac has no event stream to switch on: every worker writes its heartbeat and each stored "
    "outcome to Redis, which `celeriac status`/`inspect` read"
)
_LOGGING = (
    "`celeriac worker` logs to stderr (or --logfile) in its own format, with task name and id; "
    "configure logging yourself in a setup_logging signal receiver"
)
_SECURITY = (
    "celeriac signs messages with HMAC-SHA256 instead of X.509 certificates: set message_signing_key "
    "(and message_signing_keys while rotating)"
)
_PERIODIC = (
    "celeriac's scheduler is leaderless and keeps its state in Redis (celeriac beat, worker -B): no "
    "scheduler class, schedule file or loop interval to set"
)
_RATE = "set rate_limit= on each task that needs one (celeriac's limits are global across workers)"
_PRIORITY = (
    "celeriac's priorities are fixed levels 0 (highest) .. 9 per queue: set task_default_priority, a "
    "task's priority= or a call's priority="
)
_CHORD = (
    "a chord's body is enqueued by the script that counts its last member: nothing joins or polls, "
    "so there is no timeout or interval to set"
)
_RESULT_REDIS = "results live in the result_backend Redis; " + _URL

#: every Celery setting name that is not a celeriac setting of the same name (those are honoured as is)
CELERY_SETTINGS: dict[str, Decision] = {
    # ---- general, time and date ----
    "accept_content": Honoured(
        "accept_content",
        "content types read: msgpack (always: it is the envelope), json, pickle; MIME spellings "
        "(application/json) accepted",
        _normalized("accept_content"),
    ),
    "task_serializer": Honoured(
        "task_serializer",
        "msgpack (default), json (Celery's JSON with its type tags, for interoperability), or pickle",
        _normalized("task_serializer"),
    ),
    "result_accept_content": Refused("celeriac reads results under accept_content: set that instead"),
    "enable_utc": Fixed(True, "celeriac keeps every time as UTC (naive datetimes are taken as UTC)"),
    "timezone": Fixed(
        "UTC", "celeriac keeps every time as UTC; other zones arrive with periodic tasks (issue 12)", _utc
    ),
    # ---- task settings ----
    "task_annotations": Refused(_TASK_OPTION.format(opt="...")),
    "task_compression": Refused("celeriac messages are compact msgpack; compress large payloads yourself"),
    "task_protocol": Refused("celeriac has one wire format of its own (message.py); nothing to choose"),
    "task_publish_retry": Fixed(
        True, "a send that meets a broken connection reconnects and retries once (redis-py's policy)"
    ),
    "task_publish_retry_policy": Refused(
        "a send reconnects and retries once; wrap apply_async in your own retry for more"
    ),
    # ---- task execution ----
    "task_store_eager_result": Fixed(
        False, "eager results are returned in an EagerResult, never written to the result store"
    ),
    "task_remote_tracebacks": Fixed(
        False, "the stored error carries the task's traceback text (AsyncResult.traceback)"
    ),
    "task_track_started": Refused(
        "celeriac writes a task's result once, when it ends (no STARTED state); running tasks are "
        "listed by `celeriac inspect active`"
    ),
    "task_time_limit": Honoured(
        "task_time_limit",
        "seconds (or timedelta): default hard limit of tasks that set none; --time-limit wins",
        _normalized("task_time_limit"),
    ),
    "task_soft_time_limit": Honoured(
        "task_soft_time_limit",
        "seconds (or timedelta): default soft limit of tasks that set none; --soft-time-limit wins",
        _normalized("task_soft_time_limit"),
    ),
    "task_reject_on_worker_lost": Honoured(
        "task_reject_on_worker_lost",
        "with acks_late, a task whose process died runs again (celeriac's default: True; Celery: "
        "False); False: it fails with WorkerLostError",
    ),
    "task_acks_on_failure_or_timeout": Fixed(
        True, "a failed or timed-out task is acked (its error stored, when stored)"
    ),
    "task_default_rate_limit": Refused(_RATE),
    "result_expires": Honoured(
        "result_expires_s",
        "seconds or timedelta (celeriac: result_expires_s); None is refused: everything in Redis has a TTL",
        _to("result_expires_s"),
    ),
    # ---- result backend ----
    "result_backend_always_retry": Refused(
        "the worker retries result writes with the fenced ack, with backoff, while Redis is down"
    ),
    "result_backend_max_sleep_between_retries_ms": Refused("the worker's backoff is fixed (capped)"),
    "result_backend_base_sleep_between_retries_ms": Refused("the worker's backoff is fixed (capped)"),
    "result_backend_max_retries": Refused("the worker retries until Redis answers"),
    "result_backend_thread_safe": Fixed(True, "result stores are thread-safe", lambda v: isinstance(v, bool)),
    "result_backend_transport_options": Refused(_RESULT_REDIS),
    "result_serializer": Honoured(
        "result_serializer",
        "must equal task_serializer (checked when the app first encodes): a result travels in its "
        "task's content type",
        _normalized("result_serializer"),
    ),
    "result_compression": Refused("results are compact msgpack; return a reference for large values"),
    "result_extended": Fixed(False, "a stored result holds state, value or error, traceback, retries"),
    "result_cache_max": Fixed(-1, "AsyncResult caches only its own final state", lambda v: v in (-1, 0)),
    "result_chord_join_timeout": Refused(_CHORD),
    "result_chord_retry_interval": Refused(_CHORD),
    "override_backends": Refused("celeriac stores results in Redis (or memory:// in tests)"),
    "result_persistent": Refused("rpc:// results are not supported; results live in Redis"),
    "result_exchange": Refused(_NO_EXCHANGE),
    "result_exchange_type": Refused(_NO_EXCHANGE),
    # ---- Redis result backend ----
    "redis_backend_health_check_interval": Refused(_RESULT_REDIS),
    "redis_backend_use_ssl": Refused(_RESULT_REDIS),
    "redis_max_connections": Refused(_RESULT_REDIS),
    "redis_socket_connect_timeout": Refused(_RESULT_REDIS),
    "redis_socket_timeout": Refused(_RESULT_REDIS),
    "redis_retry_on_timeout": Refused(_RESULT_REDIS),
    "redis_socket_keepalive": Refused(_RESULT_REDIS),
    "redis_username": Refused(_RESULT_REDIS),
    "redis_password": Refused(_RESULT_REDIS),
    "redis_host": Refused(_RESULT_REDIS),
    "redis_port": Refused(_RESULT_REDIS),
    "redis_db": Refused(_RESULT_REDIS),
    "redis_backend_credential_provider": Refused(_RESULT_REDIS),
    # ---- message routing ----
    "task_queues": Refused(
        "queues are plain names, created on first use: consume with -Q, route with task_routes or "
        "queue= (no kombu Queue objects)"
    ),
    "task_queue_max_priority": Refused(_PRIORITY),
    "task_inherit_parent_priority": Refused(_PRIORITY),
    "worker_direct": Refused("send to a queue only one worker consumes (-Q) instead"),
    "task_create_missing_queues": Fixed(True, "queues are created on first use"),
    "task_create_missing_queue_type": Refused(_AMQP),
    "task_create_missing_queue_exchange_type": Refused(_AMQP),
    "task_default_queue_type": Refused(_AMQP),
    "task_default_exchange": Refused(_NO_EXCHANGE),
    "task_default_exchange_type": Refused(_NO_EXCHANGE),
    "task_default_routing_key": Refused(_NO_EXCHANGE),
    "task_default_delivery_mode": Refused("messages are always persistent (Redis persistence applies)"),
    # ---- broker ----
    "broker_read_url": Refused("one broker_url serves reading and writing"),
    "broker_write_url": Refused("one broker_url serves reading and writing"),
    "broker_failover_strategy": Refused("Redis failover (Sentinel, Cluster) is issue 14"),
    "broker_heartbeat": Refused(_AMQP),
    "broker_heartbeat_checkrate": Refused(_AMQP),
    "broker_use_ssl": Refused(_URL),
    "broker_pool_limit": Honoured(
        "broker_pool_limit", "most pooled connections a producer holds per broker (None: unbounded)"
    ),
    "broker_connection_timeout": Refused("celeriac sets its connect and read timeouts itself"),
    "broker_connection_retry": Fixed(
        True, "a worker that loses Redis retries with capped backoff, forever", lambda v: v in (True, None)
    ),
    "broker_connection_retry_on_startup": Fixed(
        True,
        "a worker that cannot reach Redis at start retries with capped backoff",
        lambda v: v in (True, None),
    ),
    "broker_connection_max_retries": Refused("a worker retries until Redis answers (capped backoff)"),
    "broker_channel_error_retry": Refused(_AMQP),
    "broker_login_method": Refused(_AMQP),
    "broker_native_delayed_delivery_queue_type": Refused(_AMQP),
    "broker_transport_options": Honoured(
        "broker_transport_options",
        "visibility_timeout -> lease_s: how long a dead worker's delivery stays owned before it runs "
        "again (a running task's lease is renewed, so long tasks need no large value); "
        "global_keyprefix -> key_prefix; master_name and sentinel_kwargs for sentinel:// URLs; "
        "fanout_prefix/fanout_patterns=True accepted; others refused",
        _transport_options,
        _read_transport,
    ),
    "broker_transport": Fixed("redis", "the broker is Redis", lambda v: v in ("redis", "rediss")),
    # ---- worker ----
    "imports": Honoured("imports", "modules the worker imports at start (as -I)"),
    "include": Honoured("include", "modules the worker imports at start (as -I)"),
    "worker_deduplicate_successful_tasks": Refused(
        "use celeriac's unique tasks instead: @app.task(unique_for=...) or apply_async(unique_key=...)"
    ),
    "worker_concurrency": Honoured("worker_concurrency", "default of -c"),
    "worker_prefetch_multiplier": Honoured(
        "worker_prefetch_multiplier",
        "celeriac takes messages only for free slots (Celery's multiplier 1 with -O fair); a larger "
        "value reserves nothing more, and the worker says so in a log line",
        _normalized("worker_prefetch_multiplier"),
    ),
    "worker_enable_prefetch_count_reduction": Fixed(
        True, "nothing is prefetched", lambda v: isinstance(v, bool)
    ),
    "worker_lost_wait": Refused("a lost process pool child is noticed at once (its pipe closes)"),
    "worker_max_tasks_per_child": Honoured("worker_max_tasks_per_child", "default of --max-tasks-per-child"),
    "worker_max_memory_per_child": Honoured(
        "worker_max_memory_per_child", "KiB, as in Celery; default of --max-memory-per-child"
    ),
    "worker_disable_rate_limits": Refused(_RATE),
    "worker_state_db": Refused("the worker keeps no local state: everything lives in Redis"),
    "worker_timer_precision": Refused("due tasks are promoted by Redis scripts; there is no timer to tune"),
    "worker_enable_remote_control": Fixed(
        True,
        "`celeriac control shutdown` and `celeriac inspect` reach every worker through Redis "
        "(a stream each worker follows)",
    ),
    "worker_proc_alive_timeout": Refused("the process pool waits for its children itself"),
    "worker_cancel_long_running_tasks_on_connection_loss": Refused(
        "tasks keep running through a Redis outage; their outcome is recorded when Redis is back, "
        "fenced by the lease"
    ),
    "worker_detect_quorum_queues": Refused(_AMQP),
    "worker_soft_shutdown_timeout": Refused("use worker_shutdown_grace_s (warm shutdown's grace)"),
    "worker_enable_soft_shutdown_on_idle": Refused("use worker_shutdown_grace_s (warm shutdown's grace)"),
    "worker_pool": Refused("choose the pool with -P on the command line (prefork, threads, gevent, solo)"),
    "worker_pool_restarts": Refused("the process pool replaces dead children by itself"),
    "worker_autoscaler": Refused("use --autoscale=MAX,MIN (celeriac's autoscaler; no custom class)"),
    "worker_consumer": Refused("the consumer is not replaceable"),
    "worker_timer": Refused("the timer is not replaceable"),
    "worker_agent": Refused("the worker has no agent"),
    # ---- events ----
    "worker_send_task_events": Refused(_EVENTS),
    "task_send_sent_event": Refused(_EVENTS),
    "event_queue_ttl": Refused(_EVENTS),
    "event_queue_expires": Refused(_EVENTS),
    "event_queue_prefix": Refused(_EVENTS),
    "event_exchange": Refused(_EVENTS),
    "event_serializer": Refused(_EVENTS),
    "events_logfile": Refused(_EVENTS),
    "events_pidfile": Refused(_EVENTS),
    "events_uid": Refused(_EVENTS),
    "events_gid": Refused(_EVENTS),
    "events_umask": Refused(_EVENTS),
    "events_executable": Refused(_EVENTS),
    # ---- remote control ----
    "control_queue_ttl": Refused("control requests are Redis keys with a TTL of their own"),
    "control_queue_expires": Refused("control requests are Redis keys with a TTL of their own"),
    "control_exchange": Refused(_NO_EXCHANGE),
    # ---- logging ----
    "worker_hijack_root_logger": Refused(_LOGGING),
    "worker_log_color": Refused(_LOGGING),
    "worker_log_format": Refused(_LOGGING),
    "worker_task_log_format": Refused(_LOGGING),
    "worker_redirect_stdouts": Refused(_LOGGING),
    "worker_redirect_stdouts_level": Refused(_LOGGING),
    # ---- security ----
    "security_key": Refused(_SECURITY),
    "security_key_password": Refused(_SECURITY),
    "security_certificate": Refused(_SECURITY),
    "security_cert_store": Refused(_SECURITY),
    "security_digest": Refused(_SECURITY),
    # ---- beat ----
    "beat_schedule": Refused(_PERIODIC),
    "beat_scheduler": Refused(_PERIODIC),
    "beat_schedule_filename": Refused(_PERIODIC),
    "beat_sync_every": Refused(_PERIODIC),
    "beat_max_loop_interval": Refused(_PERIODIC),
    "beat_cron_starting_deadline": Refused(_PERIODIC),
    # ---- other result backends (one entry each, so that the table lists them) ----
    "database_url": Refused("results are stored in Redis only"),
    "database_engine_options": Refused("results are stored in Redis only"),
    "database_short_lived_sessions": Refused("results are stored in Redis only"),
    "database_table_schemas": Refused("results are stored in Redis only"),
    "database_table_names": Refused("results are stored in Redis only"),
    "database_create_tables_at_setup": Refused("results are stored in Redis only"),
    "cache_backend": Refused("results are stored in Redis only"),
    "cache_backend_options": Refused("results are stored in Redis only"),
    "mongodb_backend_settings": Refused("results are stored in Redis only"),
    "couchbase_backend_settings": Refused("results are stored in Redis only"),
    "arangodb_backend_settings": Refused("results are stored in Redis only"),
    "elasticsearch_retry_on_timeout": Refused("results are stored in Redis only"),
    "s3_bucket": Refused("results are stored in Redis only"),
}

#: prefixes of other result stores' settings (Cassandra, S3, Azure, ...): refused together
BACKEND_FAMILIES = (
    "cassandra_",
    "s3_",
    "azureblockblob_",
    "elasticsearch_",
    "riak_",
    "dynamodb_",
    "ironcache_",
    "couchbase_",
    "arangodb_",
    "cosmosdbsql_",
    "couchdb_",
    "consul_",
    "gcs_",
    "mongodb_",
    "database_",
    "cache_",
)

#: Celery's old upper-case names (before 4.0) -> the lower-case names
OLD_NAMES: dict[str, str] = {
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_ENABLE_UTC": "enable_utc",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERY_TIMEZONE": "timezone",
    "CELERYBEAT_MAX_LOOP_INTERVAL": "beat_max_loop_interval",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYBEAT_SCHEDULER": "beat_scheduler",
    "CELERYBEAT_SCHEDULE_FILENAME": "beat_schedule_filename",
    "CELERYBEAT_SYNC_EVERY": "beat_sync_every",
    "BROKER_URL": "broker_url",
    "BROKER_READ_URL": "broker_read_url",
    "BROKER_WRITE_URL": "broker_write_url",
    "BROKER_TRANSPORT": "broker_transport",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "BROKER_CONNECTION_TIMEOUT": "broker_connection_timeout",
    "BROKER_CONNECTION_RETRY": "broker_connection_retry",
    "BROKER_CONNECTION_MAX_RETRIES": "broker_connection_max_retries",
    "BROKER_FAILOVER_STRATEGY": "broker_failover_strategy",
    "BROKER_HEARTBEAT": "broker_heartbeat",
    "BROKER_LOGIN_METHOD": "broker_login_method",
    "BROKER_POOL_LIMIT": "broker_pool_limit",
    "BROKER_USE_SSL": "broker_use_ssl",
    "CELERY_CACHE_BACKEND": "cache_backend",
    "CELERY_CACHE_BACKEND_OPTIONS": "cache_backend_options",
    "CELERY_MONGODB_BACKEND_SETTINGS": "mongodb_backend_settings",
    "CELERY_COUCHBASE_BACKEND_SETTINGS": "couchbase_backend_settings",
    "CELERY_EVENT_QUEUE_EXPIRES": "event_queue_expires",
    "CELERY_EVENT_QUEUE_TTL": "event_queue_ttl",
    "CELERY_EVENT_QUEUE_PREFIX": "event_queue_prefix",
    "CELERY_EVENT_SERIALIZER": "event_serializer",
    "CELERY_REDIS_DB": "redis_db",
    "CELERY_REDIS_HOST": "redis_host",
    "CELERY_REDIS_MAX_CONNECTIONS": "redis_max_connections",
    "CELERY_REDIS_USERNAME": "redis_username",
    "CELERY_REDIS_PASSWORD": "redis_password",
    "CELERY_REDIS_PORT": "redis_port",
    "CELERY_REDIS_BACKEND_USE_SSL": "redis_backend_use_ssl",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_MAX_CACHED_RESULTS": "result_cache_max",
    "CELERY_MESSAGE_COMPRESSION": "result_compression",
    "CELERY_RESULT_EXCHANGE": "result_exchange",
    "CELERY_RESULT_EXCHANGE_TYPE": "result_exchange_type",
    "CELERY_RESULT_EXPIRES": "result_expires",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_RESULT_PERSISTENT": "result_persistent",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_RESULT_DBURI": "database_url",
    "CELERY_RESULT_ENGINE_OPTIONS": "database_engine_options",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS": "database_short_lived_sessions",
    "CELERY_RESULT_DB_TABLE_NAMES": "database_table_names",
    "CELERY_SECURITY_CERTIFICATE": "security_certificate",
    "CELERY_SECURITY_CERT_STORE": "security_cert_store",
    "CELERY_SECURITY_KEY": "security_key",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_TASK_ACKS_LATE": "task_acks_late",
    "CELERY_ACKS_ON_FAILURE_OR_TIMEOUT": "task_acks_on_failure_or_timeout",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_TASK_ALWAYS_EAGER": "task_always_eager",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERY_COMPRESSION": "task_compression",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues",
    "CELERY_DEFAULT_DELIVERY_MODE": "task_default_delivery_mode",
    "CELERY_DEFAULT_EXCHANGE": "task_default_exchange",
    "CELERY_DEFAULT_EXCHANGE_TYPE": "task_default_exchange_type",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_DEFAULT_ROUTING_KEY": "task_default_routing_key",
    "CELERY_EAGER_PROPAGATES": "task_eager_propagates",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_QUEUES": "task_queues",
    "CELERY_ROUTES": "task_routes",
    "CELERY_SEND_SENT_EVENT": "task_send_sent_event",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERYD_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERY_TASK_TRACK_STARTED": "task_track_started",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_TASK_REJECT_ON_WORKER_LOST": "task_reject_on_worker_lost",
    "CELERYD_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_AGENT": "worker_agent",
    "CELERYD_AUTOSCALER": "worker_autoscaler",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_CONSUMER": "worker_consumer",
    "CELERY_WORKER_DIRECT": "worker_direct",
    "CELERY_DISABLE_RATE_LIMITS": "worker_disable_rate_limits",
    "CELERY_ENABLE_REMOTE_CONTROL": "worker_enable_remote_control",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger",
    "CELERYD_LOG_COLOR": "worker_log_color",
    "CELERYD_LOG_FORMAT": "worker_log_format",
    "CELERYD_WORKER_LOST_WAIT": "worker_lost_wait",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_POOL": "worker_pool",
    "CELERYD_POOL_RESTARTS": "worker_pool_restarts",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_REDIRECT_STDOUTS": "worker_redirect_stdouts",
    "CELERYD_REDIRECT_STDOUTS_LEVEL": "worker_redirect_stdouts_level",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERYD_SEND_EVENTS": "worker_send_task_events",
    "CELERYD_STATE_DB": "worker_state_db",
    "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERYD_TIMER": "worker_timer",
    "CELERYD_TIMER_PRECISION": "worker_timer_precision",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
    "CELERY_TASK_PROTOCOL": "task_protocol",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_RESULT_ACCEPT_CONTENT": "result_accept_content",
}


def decision(name: str, fields: Mapping[str, Any]) -> Decision | None:
    """What celeriac does with Celery's lower-case ``name``; None when it is a celeriac setting
    (``fields``) or not a Celery name at all. A celeriac setting of that name wins over a table entry,
    so that a setting added later (beat's ``beat_schedule``) is honoured without editing this table."""
    found = CELERY_SETTINGS.get(name)
    if name in fields:
        return found if isinstance(found, Honoured) else None
    if found is None and name.startswith(BACKEND_FAMILIES):
        return Refused("results are stored in Redis only (this is another result store's setting)")
    return found


def refusal(name: str, decided: Refused | Fixed, value: Any) -> ConfigurationError:
    """The error for a refused setting or a value a fixed setting does not take."""
    if isinstance(decided, Refused):
        return ConfigurationError(name, f"Celery setting not supported by celeriac: {decided.reason}")
    return ConfigurationError(
        name, f"only {decided.default!r} is supported, got {value!r}: {decided.note} (remove it)"
    )


def markdown_table(fields: Mapping[str, Any]) -> str:
    """The docs table: every Celery setting name with what celeriac does with it."""
    rows = ["| Celery setting | celeriac | how |", "|---|---|---|"]
    names = sorted({*CELERY_SETTINGS, *SAME_NAME})
    for name in names:
        found = decision(name, fields)
        if found is None:
            rows.append(f"| `{name}` | honoured | same name |")
        elif isinstance(found, Honoured):
            target = "" if found.target == name else f"`{found.target}`: "
            rows.append(f"| `{name}` | honoured | {target}{found.note} |")
        elif isinstance(found, Fixed):
            rows.append(f"| `{name}` | fixed: `{found.default!r}` | {found.note}; other values refused |")
        else:
            rows.append(f"| `{name}` | refused | {found.reason} |")
    rows.append(
        "| `" + "*`, `".join(BACKEND_FAMILIES) + "*` | refused | other result stores: results are stored "
        "in Redis only |"
    )
    old = ", ".join(f"`{k}`" for k in sorted(OLD_NAMES))
    return "\n".join(rows) + f"\n\nOld upper-case names, each read as its lower-case name: {old}.\n"


#: Celery's names that are celeriac settings of the same name and meaning (no table entry needed)
SAME_NAME = frozenset(
    {
        "broker_url",
        "result_backend",
        "task_default_queue",
        "task_routes",
        "task_ignore_result",
        "task_store_errors_even_if_ignored",
        "task_acks_late",
        "task_always_eager",
        "task_eager_propagates",
        "task_default_priority",
    }
)
