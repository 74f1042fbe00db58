"""AsyncResult: a handle on a sent task's outcome. Nothing is read from Redis until asked."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .exceptions import ResultsDisabled, ResultTimeout, TaskError, TaskExpiredError, TaskRevokedError
from .record import ResultRecord
from .states import READY_STATES, TaskState

if TYPE_CHECKING:
    from .app import Celeriac

R = TypeVar("R")


def rebuild_exception(record: ResultRecord) -> BaseException:
    """The task's exception as an instance of its own type when that type is safely available.

    Only builtins and classes of modules already imported in this process are used (never an import
    driven by data read from Redis); otherwise a :class:`TaskError` carrying the type name.
    """
    message = record.exc_message or ""
    if record.state is TaskState.EXPIRED:
        return TaskExpiredError(
            message or "task expired before it started", record.exc_type or "", record.traceback
        )
    if record.state is TaskState.REVOKED:
        # expired behind a rate or concurrency limit: REVOKED (as Celery), raised as the subclass
        if (record.exc_type or "").endswith(".TaskExpiredError"):
            return TaskExpiredError(message, record.exc_type or "", record.traceback)
        return TaskRevokedError(message or "task revoked", record.exc_type or "", record.traceback)
    exc_type = record.exc_type or ""
    module_name, _, qualname = exc_type.rpartition(".")
    cls: Any = None
    if module_name == "builtins":
        cls = getattr(builtins, qualname, None)
    elif module_name in sys.modules:
        obj: Any = sys.modules[module_name]
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        cls = obj
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:
            exc = None
        if exc is not None:
            exc.remote_traceback = record.traceback  # type: ignore[attr-defined]
            if record.traceback and hasattr(exc, "add_note"):  # Python 3.11+: shown under the local traceback
                exc.add_note(f"Remote traceback (task {record.task_id}):\n{record.traceback}")
            return exc
    return TaskError(f"{exc_type}: {message}", exc_type, record.traceback)


class AsyncResult(Generic[R]):
    """The outcome of a task, fetched from the result backend on demand.

    Args:
        id: the task id.
        app: the app whose result backend holds the outcome.
        ignored: the task was sent with results ignored, so a success will never be stored.
    """

    def __init__(
        self,
        id: str,
        app: Celeriac | None = None,
        *,
        ignored: bool = False,
        parent: AsyncResult[Any] | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.app = app
        self.ignored = ignored
        #: the result of the step before this one in a chain (a chord body's: the header's GroupResult)
        self.parent = parent
        self._record: ResultRecord | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    @property
    def task_id(self) -> str:
        return self.id

    def _backend_or_raise(self) -> Any:
        if self.app is None:
            raise ResultsDisabled("this AsyncResult has no app: construct it with app=")
        backend = self.app.backend
        if backend is None:
            raise ResultsDisabled("results are disabled (result_backend='disabled')")
        return backend

    def _decode(self, payload: bytes) -> ResultRecord:
        assert self.app is not None  # a payload came from the app's backend
        return self.app.codec.decode_result(self.id, payload)

    def _fetch(self) -> ResultRecord | None:
        if self._record is None:
            payload = self._backend_or_raise().get(self.id)
            if payload is not None:
                self._record = self._decode(payload)
        return self._record

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        follow_parents: bool = True,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        **_ignored: Any,
    ) -> R:
        """Wait for the task to finish and return its value.

        Blocks server-side (no polling). Raises the task's exception (its own type when available,
        with the remote traceback attached) when ``propagate``; raises :class:`ResultTimeout` after
        ``timeout`` seconds. In a workflow, a failure raises the exception of the first step that
        failed (``follow_parents``): a chain's later steps and a chord's body fail because of it.

        ``on_message`` is called with each state the task records meanwhile (``update_state``),
        then with the final one, as a Celery-shaped dict: ``{"task_id", "status", "result"}``
        (``result`` is the meta of a progress state). Progress is pushed; the final record is then
        checked at least every 0.2 s.

        Raises:
            ResultsDisabled: the task ignores results (send with ``ignore_result=False``) or results
                are disabled in the app.
        """
        if self._record is None:
            self._check_not_ignored()
            backend = self._backend_or_raise()
            if on_message is None:
                payload = backend.wait(self.id, timeout)
            else:
                payload = backend.wait_progress(self.id, timeout, lambda p: self._on_progress(p, on_message))
            if payload is None:
                raise ResultTimeout(f"task {self.id} did not finish within {timeout} s")
            self._record = self._decode(payload)
            if on_message is not None:
                final = self._record
                value = final.value if final.state is TaskState.SUCCESS else rebuild_exception(final)
                on_message({"task_id": self.id, "status": str(final.state), "result": value})
        return self._outcome(propagate, follow_parents)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> R:
        """:meth:`get` for async code (``await result.aget(timeout=10)``, or ``await result``): waits
        without blocking the event loop (an asyncio Redis client; other stores: a thread)."""
        if self._record is None:
            self._check_not_ignored()
            payload = await self._backend_or_raise().wait_async(self.id, timeout)
            if payload is None:
                raise ResultTimeout(f"task {self.id} did not finish within {timeout} s")
            self._record = self._decode(payload)
        return self._outcome(propagate)

    def __await__(self) -> Generator[Any, None, R]:
        """``await result``: :meth:`aget` without a timeout."""
        return self.aget().__await__()

    def _check_not_ignored(self) -> None:
        if self.ignored:
            raise ResultsDisabled(
                f"task {self.id} was sent with ignore_result=True: its result will not be stored "
                "(pass ignore_result=False to the task or the call)"
            )

    def _outcome(self, propagate: bool, follow_parents: bool = True) -> R:
        record = self._record
        assert record is not None
        if record.state is TaskState.SUCCESS:
            return record.value  # type: ignore[no-any-return]
        if propagate and follow_parents:
            cause = self._failed_parent()
            if cause is not None:
                raise cause
        if propagate:
            raise rebuild_exception(record)
        return rebuild_exception(record)  # type: ignore[return-value]

    def _failed_parent(self) -> BaseException | None:
        """The exception of the earliest failed ancestor (walking ``parent``), if any has failed."""
        found: BaseException | None = None
        node: Any = self.parent
        while node is not None:
            if isinstance(node, GroupResult):
                for r in node.leaves():
                    if r.failed():
                        found = r.result
                        break
            elif node.failed():
                found = node.result
            node = node.parent
        return found

    def wait(self, timeout: float | None = None, propagate: bool = True) -> R:
        """Alias of :meth:`get` (Celery compatibility)."""
        return self.get(timeout=timeout, propagate=propagate)

    def _on_progress(self, payload: bytes, callback: Callable[[dict[str, Any]], None]) -> None:
        from .progress import decode_progress

        progress = decode_progress(payload)
        if progress is not None:
            callback({"task_id": self.id, "status": progress.state, "result": progress.meta})

    def _progress(self) -> Any:
        """The final record if known, else the latest progress record (one round trip), else None."""
        if self._record is not None:
            return self._record
        final, progress = self._backend_or_raise().get_with_progress(self.id)
        if final is not None:
            self._record = self._decode(final)
            return self._record
        if progress is not None:
            from .progress import decode_progress

            return decode_progress(progress)
        return None

    @property
    def state(self) -> str:
        """``PENDING`` until a record exists; then the task's custom state (``update_state``, such as
        ``"PROGRESS"``) while it runs, and its final state (a :class:`TaskState`) once done."""
        found = self._progress()
        if found is None:
            return TaskState.PENDING
        return found.state  # type: ignore[no-any-return]

    @property
    def info(self) -> Any:
        """Alias of :attr:`result` (Celery): the meta of the latest ``update_state`` while the task
        runs, then its value or exception."""
        return self.result

    status = state

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state is TaskState.SUCCESS

    def failed(self) -> bool:
        return self.state is TaskState.FAILURE

    @property
    def result(self) -> Any:
        """The value when successful, the exception when failed, the ``update_state`` meta while it
        runs, None while pending."""
        found = self._progress()
        if found is None:
            return None
        if isinstance(found, ResultRecord):
            return found.value if found.state is TaskState.SUCCESS else rebuild_exception(found)
        return found.meta  # a running task's update_state meta, as in Celery

    @property
    def children(self) -> list[AsyncResult[Any]]:
        """The tasks this task's success started in its workflow (the next step of its chain, its
        callbacks), as recorded with its result; empty while it has not finished."""
        record = self._fetch()
        return [AsyncResult(c, self.app) for c in record.children] if record is not None else []

    @property
    def traceback(self) -> str | None:
        record = self._fetch()
        return record.traceback if record else None

    @property
    def date_done(self) -> float | None:
        record = self._fetch()
        return record.date_done_ms / 1000 if record else None

    def forget(self) -> None:
        """Delete the stored result."""
        self._backend_or_raise().forget(self.id)
        self._record = None

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM", **_unused: Any) -> None:
        """Revoke this task (see :meth:`celeriac.control.Control.revoke`)."""
        if self.app is None:
            raise ResultsDisabled("this AsyncResult has no app: construct it with app=")
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)
        self._record = None


def _revoke(app: Celeriac | None, ids: list[str], **options: Any) -> None:
    control = getattr(app, "control", None)
    if control is None:
        raise NotImplementedError(
            "revoke needs app.control (celeriac's task-control module); this build does not have it"
        )
    control.revoke(ids, **options)


class GroupResult:
    """The results of a group's members, in member order (Celery's ``GroupResult``).

    Args:
        id: the group id.
        results: the members' results (a member that is itself a group gives a nested GroupResult).
        app: the app whose result backend holds them.
        parent: the result of the step before the group in a chain.
    """

    def __init__(
        self,
        id: str,
        results: list[AsyncResult[Any] | GroupResult] | None = None,
        app: Celeriac | None = None,
        parent: AsyncResult[Any] | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.results = list(results or [])
        self.app = app
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any] | GroupResult:
        return self.results[index]

    @property
    def children(self) -> list[AsyncResult[Any] | GroupResult]:
        return self.results

    def leaves(self) -> list[AsyncResult[Any]]:
        """Every task result, nested groups flattened, in member order."""
        out: list[AsyncResult[Any]] = []
        for r in self.results:
            out.extend(r.leaves() if isinstance(r, GroupResult) else [r])
        return out

    def get(self, timeout: float | None = None, propagate: bool = True, **_ignored: Any) -> list[Any]:
        """Wait for every member and return their values in member order, whatever the completion
        order. ``propagate``: raise the first failure in member order; otherwise the exceptions take
        the failed members' places.

        Raises:
            ResultTimeout: not all members finished within ``timeout`` seconds (all together).
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[Any] = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if isinstance(r, GroupResult):
                out.append(r.get(timeout=left, propagate=propagate))
            else:
                out.append(r.get(timeout=left, propagate=propagate, follow_parents=False))
        return out

    join = get
    join_native = get

    def ready(self) -> bool:
        """Every member finished (succeeded, failed, expired or was revoked)."""
        return all(r.ready() for r in self.leaves())

    def successful(self) -> bool:
        return all(r.successful() for r in self.leaves())

    def failed(self) -> bool:
        """Some member failed."""
        return any(r.failed() for r in self.leaves())

    def waiting(self) -> bool:
        """Some member has not finished yet."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(1 for r in self.leaves() if r.successful())

    def forget(self) -> None:
        """Delete the members' results and the saved group."""
        for r in self.leaves():
            r.forget()
        if self.app is not None and self.app.backend is not None:
            self.app.backend.forget(self.id)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke every member (``app.control.revoke``)."""
        _revoke(self.app, [r.id for r in self.leaves()], terminate=terminate, signal=signal)

    def save(self) -> GroupResult:
        """Store the member ids (with the result TTL) so that :meth:`restore` can rebuild it."""
        from .record import ResultWrite, encode_record

        app = self.app
        if app is None or app.backend is None:
            raise ResultsDisabled("GroupResult.save() needs an app with a result backend")
        record = ResultRecord(self.id, TaskState.SUCCESS, {"group": _tree(self)})
        app.backend.store([ResultWrite(self.id, encode_record(record), app.conf.result_expires_s)])
        return self

    @classmethod
    def restore(cls, id: str, app: Celeriac | None = None) -> GroupResult | None:
        """The group saved under ``id``, or None."""
        if app is None or app.backend is None:
            raise ResultsDisabled("GroupResult.restore() needs app= with a result backend")
        payload = app.backend.get(id)
        if payload is None:
            return None
        value = app.codec.decode_result(id, payload).value
        if not isinstance(value, dict) or "group" not in value:
            return None
        tree = _untree(value["group"], app)
        return tree if isinstance(tree, GroupResult) else None


def _tree(res: AsyncResult[Any] | GroupResult) -> Any:
    """A group's member ids as nested lists (a member group: ``[id, [members]]``)."""
    if isinstance(res, GroupResult):
        return [res.id, [_tree(r) for r in res.results]]
    return res.id


def _untree(node: Any, app: Celeriac) -> AsyncResult[Any] | GroupResult:
    if isinstance(node, list):
        return GroupResult(node[0], [_untree(n, app) for n in node[1]], app)
    return AsyncResult(node, app)


class EagerResult(AsyncResult[R]):
    """The outcome of a task run inline (``task_always_eager`` or ``Task.apply``): already known."""

    def __init__(self, record: ResultRecord, app: Celeriac | None = None) -> None:
        super().__init__(record.task_id, app)
        self._record = record

    def __repr__(self) -> str:
        return f"<EagerResult {self.id} {self._record.state if self._record else ''}>"

    def _fetch(self) -> ResultRecord | None:
        return self._record

    def forget(self) -> None:
        self._record = None
