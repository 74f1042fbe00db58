"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import celeriac

EXPECTED = {
    "AsyncResult",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerFullError",
    "Celeriac",
    "CeleriacError",
    "Config",
    "ConfigurationError",
    "DecodeError",
    "EagerResult",
    "MaxRetriesExceededError",
    "MessageTooLarge",
    "NotRegistered",
    "Reject",
    "Request",
    "ResultError",
    "ResultTimeout",
    "ResultTooLarge",
    "ResultsDisabled",
    "Retry",
    "SerializationError",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TaskExpiredError",
    "TaskRevokedError",
    "TaskState",
    "TimeLimitExceeded",
    "Worker",
    "WorkerLostError",
    "WorkerShutdown",
    "__version__",
    "current_request",
    # Celery's names (issue 15): a port edits only its import lines
    "Celery",
    "Ignore",
    "current_app",
    "current_task",
    "shared_task",
    "signature",
}


def test_all_is_pinned() -> None:
    assert set(celeriac.__all__) == EXPECTED
    for name in celeriac.__all__:
        assert hasattr(celeriac, name)


def test_every_error_derives_from_one_base() -> None:
    for name in celeriac.__all__:
        obj = getattr(celeriac, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj is not celeriac.WorkerShutdown:
            assert issubclass(obj, celeriac.CeleriacError), name
