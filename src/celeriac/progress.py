"""Progress of a running task: ``self.update_state(state="PROGRESS", meta={...})``.

A progress record lives beside the task's result, in its own key (``<result key>:progress``) with the
task's result TTL, written by ``store_progress.lua``, which refuses once a final result exists and
publishes the record on a channel of the same name for ``AsyncResult.get(on_message=...)``. A final
result is never overwritten by progress: they are different keys, and readers take the final one
first.

Writes are throttled per task: at most one per ``progress_interval_s`` (default 0.1 s, so at most 10
writes per second per task, whatever the task's loop does). A call inside the interval replaces the
pending state (latest wins), which one background thread per process writes when the interval ends.
The task's own process writes (like a task sending a subtask does): the worker's loop is not involved.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from .exceptions import CeleriacError, SerializationError

if TYPE_CHECKING:
    from .app import Celeriac

logger = logging.getLogger("celeriac.progress")

__all__ = ["Progress", "decode_progress", "encode_progress", "update_state"]


@dataclass(frozen=True, slots=True)
class Progress:
    """A decoded progress record."""

    state: str
    meta: Any
    time_ms: int


def encode_progress(state: str, meta: Any, time_ms: int) -> bytes:
    """Encode a progress record (a msgpack map: ``s`` state, ``m`` meta, ``t`` time).

    Raises:
        SerializationError: ``meta`` is not msgpack-serializable.
    """
    try:
        return msgpack.packb({"s": state, "m": meta, "t": time_ms}, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"update_state meta is not serializable: {exc}") from exc


def decode_progress(payload: bytes) -> Progress | None:
    """The progress record in ``payload``, or None when it is not one (anyone may write to Redis)."""
    try:
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        state = fields["s"]
        if isinstance(state, str) and state:
            return Progress(state, fields.get("m"), int(fields.get("t", 0)))
    except Exception:  # garbage of any kind reads as "no progress"
        pass
    return None


class _Throttle:
    """Per process: the last write time and the pending state of each task, and one flush thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}  # task id -> monotonic time of its last write
        self.pending: dict[str, tuple[Celeriac, bytes, float, float]] = {}  # id -> app, record, ttl, due
        self.wake = threading.Condition(self.lock)
        self.thread: threading.Thread | None = None

    def submit(self, app: Celeriac, task_id: str, payload: bytes, ttl_s: float, interval_s: float) -> bool:
        """True: write now. False: kept as pending (written by the flush thread when due)."""
        now = time.monotonic()
        with self.lock:
            last = self.last.get(task_id)
            if last is None or now - last >= interval_s:
                self.last[task_id] = now
                self.pending.pop(task_id, None)
                self._forget_old(now, interval_s)
                return True
            self.pending[task_id] = (app, payload, ttl_s, last + interval_s)
            if self.thread is None or not self.thread.is_alive():  # also after a fork
                self.thread = threading.Thread(target=self._run, name="celeriac-progress", daemon=True)
                self.thread.start()
            self.wake.notify()
            return False

    def _forget_old(self, now: float, interval_s: float) -> None:
        if len(self.last) > 10_000:  # finished tasks: nothing pending, interval long past
            for task_id in [
                t for t, at in self.last.items() if now - at > interval_s and t not in self.pending
            ]:
                del self.last[task_id]

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.pending:
                    self.wake.wait()
                now = time.monotonic()
                due = min(item[3] for item in self.pending.values())
                if due > now:
                    self.wake.wait(due - now)
                    continue
                ready = {t: item for t, item in self.pending.items() if item[3] <= now}
                for task_id in ready:
                    del self.pending[task_id]
                    self.last[task_id] = now
            for task_id, (app, payload, ttl_s, _due) in ready.items():
                _write(app, task_id, payload, ttl_s)


_throttle = _Throttle()
_FINAL = frozenset({"SUCCESS", "FAILURE", "EXPIRED", "REVOKED"})


def _write(app: Celeriac, task_id: str, payload: bytes, ttl_s: float) -> None:
    backend = app.backend
    if backend is None:
        return
    try:
        backend.store_progress(task_id, payload, ttl_s)
    except CeleriacError as exc:  # progress is best effort: the task goes on
        logger.warning("update_state of task %s not recorded: %s", task_id, exc)


def update_state(app: Celeriac, task_id: str, state: str, meta: Any, result_expires_s: float | None) -> None:
    """Record ``state``/``meta`` for ``task_id`` (throttled; see the module docstring)."""
    if not isinstance(state, str) or not state:
        raise ValueError(f"state must be a non-empty string, got {state!r}")
    if state in _FINAL:
        raise ValueError(
            f"update_state({state!r}): final states come from the task's outcome; use a custom state"
        )
    if app.backend is None:
        return  # as Celery without a result backend: nothing to record
    payload = encode_progress(state, meta, int(time.time() * 1000))
    ttl_s = result_expires_s if result_expires_s is not None else app.conf.result_expires_s
    if _throttle.submit(app, task_id, payload, ttl_s, app.conf.progress_interval_s):
        _write(app, task_id, payload, ttl_s)
