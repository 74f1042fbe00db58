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
