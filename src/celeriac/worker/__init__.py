"""The worker: fetch, execute, record, recover."""

from .executor import Executor, Outcome
from .worker import Worker, WorkerStats

__all__ = ["Executor", "Outcome", "Worker", "WorkerStats"]
