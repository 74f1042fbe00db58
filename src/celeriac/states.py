"""Task states, named as in Celery, with the sets callers usually test against."""

from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    """The state of a task as seen through its result."""

    PENDING = "PENDING"  # unknown: queued, running, or its result was never stored or has expired
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    EXPIRED = "EXPIRED"  # not started before ``expires``: never ran
    REVOKED = "REVOKED"  # reserved: nothing revokes yet (revoke arrives with the workflow work)
    IGNORED = "IGNORED"  # the task raised Ignore: nothing is stored (seen only in eager mode)

    def __str__(self) -> str:
        return self.value


READY_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.EXPIRED, TaskState.REVOKED})
UNREADY_STATES = frozenset({TaskState.PENDING})
EXCEPTION_STATES = frozenset({TaskState.FAILURE, TaskState.EXPIRED, TaskState.REVOKED})

PENDING = TaskState.PENDING
SUCCESS = TaskState.SUCCESS
FAILURE = TaskState.FAILURE
EXPIRED = TaskState.EXPIRED
REVOKED = TaskState.REVOKED
IGNORED = TaskState.IGNORED

# Celery's other state names, for code that compares against them: celeriac never stores these
# (a result is written once, when the task ends; a retried task stays PENDING until then)
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
REJECTED = "REJECTED"
PROPAGATE_STATES = frozenset({TaskState.FAILURE, TaskState.REVOKED})
ALL_STATES = frozenset({*TaskState, RECEIVED, STARTED, RETRY, REJECTED})
