"""A real worker on its own event loop in a background thread (integration tests, notebooks).

Unlike :func:`celeriac.testing.drain`, it keeps running until stopped, so a test can block on
``AsyncResult.get()`` while it works, and it records every outcome once Redis confirmed it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..execution import Outcome
from ..worker.worker import Worker

if TYPE_CHECKING:
    from ..app import Celeriac


class ThreadWorker:
    """Run ``Worker(app, **options)`` in a daemon thread.

    ``outcomes`` lists what the worker recorded; :meth:`wait_outcomes` blocks until a condition on
    them holds (an event, not a poll).
    """

    def __init__(self, app: Celeriac, **options: Any) -> None:
        self.outcomes: list[Outcome] = []
        self._changed = threading.Condition()
        self._ready = threading.Event()
        user_hook: Callable[[Outcome], None] | None = options.pop("on_outcome", None)
        self._user_hook = user_hook
        self.worker = Worker(app, on_outcome=self._record, **options)
        self.thread = threading.Thread(target=self._run, name="celeriac-thread-worker", daemon=True)
        self.error: BaseException | None = None

    def _record(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()
        if self._user_hook is not None:
            self._user_hook(outcome)

    def _run(self) -> None:
        async def main() -> None:
            run = asyncio.create_task(self.worker.run())
            ready = asyncio.create_task(self.worker.wait_ready())
            await asyncio.wait([run, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if run.done():  # failed at start: record its error before start() looks at it
                await run
            self._ready.set()
            await run

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the thread that called start()
            self.error = exc
            self._ready.set()

    def start(self, timeout_s: float = 10.0) -> ThreadWorker:
        """Start and return once the worker consumes its queues."""
        self.thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"worker did not start within {timeout_s}s")
        if self.error is not None:
            raise self.error
        return self

    def wait_outcomes(
        self, predicate: Callable[[list[Outcome]], bool], timeout_s: float = 20
    ) -> list[Outcome]:
        """Block until ``predicate(outcomes)`` holds; raise TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.outcomes), timeout_s):
                raise TimeoutError(f"condition not met within {timeout_s}s; outcomes: {self.outcomes}")
            return list(self.outcomes)

    def stop(self, cold: bool = False, timeout_s: float = 30.0) -> None:
        """Stop the worker (warm unless ``cold``) and wait for its thread."""
        self.worker.stop(cold=cold)
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"worker did not stop within {timeout_s}s")
