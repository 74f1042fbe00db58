"""The periodic-entry and flow-control pages: ``/periodic`` (beat entries: schedule, last and next
run, paused, catch-up policy) and ``/limits`` (rate limits, concurrency limits with their current
holders, paused queues), their ``/api/`` twins, and the admin actions the CLI has (``celeriac beat
pause|resume|run-now``, ``celeriac queue pause|resume``).

Reads stay bounded whatever the number of entries: the periodic list is one ``HSCAN`` page of the
entries hash (cursor paging, in hash order) and one ``HMGET`` per queue of that page's state fields;
a name search is one ``HGET`` (exact) or a bounded ``HSCAN MATCH`` (a glob). Concurrency holders are
shown up to ``_MAX_HOLDERS`` per limiter, keyed limiters up to ``_MAX_KEYED`` per queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._redis.client import to_str
from ..beat.admin import Beat, EntryStatus
from ..beat.entries import unpack_entry
from ..exceptions import ConfigurationError
from ..flow.admin import FlowAdmin
from ..flow.keys import FlowKeys
from ..message import peek
from ._params import BadRequest, action_done, limit, quote

if TYPE_CHECKING:
    from typing import Any as Dashboard  # celeriac.dashboard.app.Dashboard (it imports this module)

_MAX_HOLDERS = 100  # holders shown per concurrency limiter
_MAX_KEYED = 200  # keyed limiters (with parked messages) shown per queue
_MATCH_BUDGET = 50  # HSCAN calls for one page of a glob search (then the page says it is partial)
_GLOB = set("*?[")


@dataclass
class EntryPage:
    entries: list[EntryStatus]
    next_cursor: str | None
    total: int
    partial: bool = False


@dataclass
class Holder:
    entry_id: str
    task_id: str | None
    task_name: str | None
    lease_expires_ms: int


@dataclass
class ConcurrencyRow:
    task: str
    queue: str
    limit: int
    limiter: str
    holders: list[Holder]
    holding: int
    waiting: int
    keyed: bool


class Operations:
    """Reads and actions of the two pages, for one dashboard (stateless but for lazily built
    admin objects, which hold only the app's clients)."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.app = dash.app
        self._beat: Beat | None = None
        self._flow: FlowAdmin | None = None

    @property
    def beat(self) -> Beat:
        if self._beat is None:
            self._beat = Beat(self.app)
        return self._beat

    @property
    def flow(self) -> FlowAdmin:
        if self._flow is None:
            self._flow = FlowAdmin(self.app)
        return self._flow

    def routes(self) -> list[Route]:
        v = self.dash._view
        return [
            Route("/periodic", v(self.periodic_page)),
            Route("/periodic/{name:path}/pause", v(self.pause_entry, "admin"), methods=["POST"]),
            Route("/periodic/{name:path}/resume", v(self.resume_entry, "admin"), methods=["POST"]),
            Route("/periodic/{name:path}/run-now", v(self.run_now, "admin"), methods=["POST"]),
            Route("/limits", v(self.limits_page)),
            Route("/queues/{queue}/pause", v(self.pause_queue, "admin"), methods=["POST"]),
            Route("/queues/{queue}/resume", v(self.resume_queue, "admin"), methods=["POST"]),
            Route("/api/periodic", v(self.api_periodic)),
            Route("/api/periodic/{name:path}/pause", v(self.pause_entry, "admin"), methods=["POST"]),
            Route("/api/periodic/{name:path}/resume", v(self.resume_entry, "admin"), methods=["POST"]),
            Route("/api/periodic/{name:path}/run-now", v(self.run_now, "admin"), methods=["POST"]),
            Route("/api/periodic/{name:path}", v(self.api_entry)),
            Route("/api/limits", v(self.api_limits)),
            Route("/api/queues/{queue}/pause", v(self.pause_queue, "admin"), methods=["POST"]),
            Route("/api/queues/{queue}/resume", v(self.resume_queue, "admin"), methods=["POST"]),
        ]

    # ---- periodic entries ----------------------------------------------------------------------------
    def entries(self, cursor: str | None, count: int, name: str | None = None) -> EntryPage:
        """One page of entries with their state (see the module docstring)."""
        beat = self.beat
        client = beat.client
        total = int(client.hlen(beat.keys.entries))
        raw: dict[str, Any] = {}
        partial = False
        next_cursor: str | None = None
        if name and not (_GLOB & set(name)):
            data = client.hget(beat.keys.entries, name)
            if data is not None:
                raw[name] = data
        else:
            try:
                at = int(cursor or 0)
            except ValueError:
                raise BadRequest(f"bad cursor {cursor!r}") from None
            calls = 0
            while True:
                reply: Any = client.hscan(
                    beat.keys.entries, at, match=name or None, count=max(count, 1000) if name else count
                )
                at, chunk = reply
                calls += 1
                raw.update((to_str(k), v) for k, v in chunk.items())
                if at == 0 or len(raw) >= count:
                    break
                if calls >= _MATCH_BUDGET:
                    partial = True
                    break
            next_cursor = str(at) if at else None
        entries = []
        for data in raw.values():
            try:
                entries.append(unpack_entry(data if isinstance(data, bytes) else str(data).encode()))
            except ConfigurationError:
                continue  # written by something else (shown by nobody, as `celeriac beat list` does)
        by_queue: dict[str, list[Any]] = {}
        for e in entries:
            by_queue.setdefault(e.queue, []).append(e)
        pipe = client.pipeline(transaction=False)
        for queue, group in by_queue.items():
            pipe.hmget(beat.keys.state(queue), [f"{p}:{e.name}" for e in group for p in ("d", "l", "lp")])
        now_ms = int(beat.clock() * 1000)
        out: list[EntryStatus] = []
        for group, values in zip(by_queue.values(), pipe.execute()):
            for i, e in enumerate(group):
                d, last, before = values[3 * i : 3 * i + 3]
                out.append(beat._status(e, d, last, before, now_ms))
        out.sort(key=lambda s: s.entry.name)
        return EntryPage(out, next_cursor, total, partial)

    def periodic_page(self, request: Request) -> Response:
        q = request.query_params
        name = q.get("name", "").strip() or None
        page = self.entries(q.get("cursor"), limit(request), name)
        html: Response = self.dash.render(
            request,
            "periodic.html",
            page=page,
            name=name or "",
            can_run=True,
            done=q.get("done"),
        )
        return html

    def api_periodic(self, request: Request) -> Response:
        q = request.query_params
        page = self.entries(q.get("cursor"), limit(request), q.get("name", "").strip() or None)
        return JSONResponse(
            {
                "entries": [s.as_dict() for s in page.entries],
                "next_cursor": page.next_cursor,
                "total": page.total,
                "partial": page.partial,
            }
        )

    def api_entry(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            status = self.beat.get(name)
        except ConfigurationError:
            return JSONResponse({"error": f"no periodic entry {name!r}"}, status_code=404)
        return JSONResponse(status.as_dict())

    def _entry_action(self, request: Request, verb: str) -> Response:
        name = request.path_params["name"]
        where = f"/periodic?name={quote(name)}"
        try:
            if verb == "pause":
                message = "paused" if self.beat.pause(name) else "was paused already"
            elif verb == "resume":
                message = "resumed" if self.beat.resume(name) else "was not paused"
            else:
                result = self.beat.run_now(name)
                message = f"sent now as task {result.id}"
        except ConfigurationError:
            return action_done(request, where, f"no periodic entry {name!r}", 404)
        return action_done(request, where, f"{name}: {message}")

    def pause_entry(self, request: Request) -> Response:
        return self._entry_action(request, "pause")

    def resume_entry(self, request: Request) -> Response:
        return self._entry_action(request, "resume")

    def run_now(self, request: Request) -> Response:
        return self._entry_action(request, "run-now")

    # ---- flow control ----------------------------------------------------------------------------
    def limits(self) -> dict[str, Any]:
        """Rate limits (declared and set at run time), concurrency limits with their holders, and
        every known queue with its paused flag: a few round trips, bounded by the registered tasks."""
        flow = self.flow
        client = flow.client
        keys = FlowKeys(flow.keys.prefix)
        config = {to_str(k): to_str(v) for k, v in client.hgetall(keys.config).items()}
        overrides = {k[5:]: v for k, v in config.items() if k.startswith("rate:")}
        paused = {k[7:] for k in config if k.startswith("paused:")}
        rates = []
        concurrency: list[ConcurrencyRow] = []
        for name in sorted(set(self.app.tasks) | set(overrides)):
            task = self.app.tasks.get(name)
            declared = getattr(task, "rate_limit", None) if task is not None else None
            override = overrides.get(name)
            if declared is not None or override is not None:
                effective = override if override is not None else declared
                rates.append(
                    {
                        "task": name,
                        "declared": None if declared is None else str(declared),
                        "set_at_run_time": override,
                        "effective": None if effective in (None, "0", 0) else str(effective),
                        "scope": getattr(task, "rate_limit_scope", "global"),
                        "keyed": getattr(task, "rate_limit_key", None) is not None,
                    }
                )
            max_conc = getattr(task, "max_concurrency", None) if task is not None else None
            if max_conc is not None:
                queue = self.app.route(name, task)
                keyed = getattr(task, "concurrency_key", None) is not None
                concurrency.append(ConcurrencyRow(name, queue, int(max_conc), name, [], 0, 0, keyed))
        self._holders(client, keys, concurrency)
        names = sorted(set(self.dash.data.queue_names()) | paused)
        queues = [{"queue": q, "paused": q in paused} for q in names]
        return {"rates": rates, "concurrency": concurrency, "queues": queues}

    def _holders(self, client: Any, keys: FlowKeys, rows: list[ConcurrencyRow]) -> None:
        """Fill each limiter's holders (live leases only) and parked count; a keyed limit becomes one
        row per key that has parked messages (the only keys listed anywhere: the queue's index)."""
        if not rows:
            return
        pipe = client.pipeline(transaction=False)
        for row in rows:
            if row.keyed:
                pipe.sscan(keys.index(row.queue), 0, match=f"{row.task}:*", count=_MAX_KEYED * 5)
        scans = iter(pipe.execute())
        expanded: list[ConcurrencyRow] = []
        for row in rows:
            if not row.keyed:
                expanded.append(row)
                continue
            _cursor, names = next(scans)
            for limiter in sorted(to_str(n) for n in names)[:_MAX_KEYED]:
                expanded.append(ConcurrencyRow(row.task, row.queue, row.limit, limiter, [], 0, 0, True))
            if not names:
                expanded.append(row)  # no key has parked messages: shown once, without holders
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        for row in expanded:
            pipe.zrangebyscore(keys.holders(row.queue, row.limiter), now_ms, "+inf", 0, _MAX_HOLDERS, True)
            pipe.zcount(keys.holders(row.queue, row.limiter), now_ms, "+inf")
            pipe.llen(keys.waiting(row.queue, row.limiter))
        replies = pipe.execute()
        ready_keys = self.app.broker.keys
        pipe = client.pipeline(transaction=False)
        wanted: list[tuple[ConcurrencyRow, str, int]] = []
        for i, row in enumerate(expanded):
            held, row.holding, row.waiting = replies[3 * i], int(replies[3 * i + 1]), int(replies[3 * i + 2])
            for member, score in held:
                entry_id = to_str(member)
                wanted.append((row, entry_id, int(score)))
                pipe.xrange(ready_keys.queue(row.queue).ready, entry_id, entry_id, count=1)
        found_all = pipe.execute(raise_on_error=False) if wanted else []
        for (row, entry_id, expires), found in zip(wanted, found_all):
            task_id = task_name = None
            if isinstance(found, list) and found:
                data = found[0][1].get(b"m") or found[0][1].get("m")
                got = peek(data) if isinstance(data, bytes) else None
                if got is not None:
                    task_id, task_name = got
            row.holders.append(Holder(entry_id, task_id, task_name, expires))
        rows[:] = expanded

    def limits_page(self, request: Request) -> Response:
        done = request.query_params.get("done")
        html: Response = self.dash.render(request, "limits.html", limits=self.limits(), done=done)
        return html

    def api_limits(self, request: Request) -> Response:
        from dataclasses import asdict

        got = self.limits()
        return JSONResponse({**got, "concurrency": [asdict(r) for r in got["concurrency"]]})

    def _queue_action(self, request: Request, pause: bool) -> Response:
        queue = request.path_params["queue"]
        if not queue or any(c in queue for c in "{}\n\r"):
            raise BadRequest(f"bad queue name {queue!r}")
        if pause:
            message = "paused" if self.flow.pause_queue(queue) else "was paused already"
        else:
            message = "resumed" if self.flow.resume_queue(queue) else "was not paused"
        return action_done(request, "/limits", f"queue {queue} {message}")

    def pause_queue(self, request: Request) -> Response:
        return self._queue_action(request, True)

    def resume_queue(self, request: Request) -> Response:
        return self._queue_action(request, False)
