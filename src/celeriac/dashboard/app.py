"""The dashboard: a Starlette app with server-rendered Jinja2 pages and a JSON API under ``/api/``.

Every page reads Redis on each request through :class:`~celeriac.dashboard.data.DashboardData`
(nothing is cached or kept here): any number of dashboard processes show the same numbers. Sync
endpoints run in Starlette's thread pool, so a slow Redis reply does not block other requests.
Actions are POST routes that need the admin role and pass the policy's CSRF check.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._urls import redact
from .._version import __version__
from ..exceptions import CeleriacError
from ..monitor.record import STATES
from . import svg
from ._params import (
    BadRequest,
    age,
    choice,
    dur,
    int_param,
    int_value,
    limit,
    num,
    quote,
    time_param,
    ts,
)
from ._params import (
    action_done as _action_done,
)
from .data import DashboardData, series_json
from .policy import OpenPolicy, Policy, Role

if TYPE_CHECKING:
    from ..app import Celeriac

HERE = Path(__file__).parent
PAGE_SIZES = (20, 50, 100, 200)


def create_app(
    app: Celeriac,
    *,
    policy: Policy | None = None,
    queues: tuple[str, ...] | list[str] = (),
    refresh_s: float = 5.0,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application (mount it anywhere, or serve it with uvicorn).

    Args:
        app: the celeriac app whose Redis is read.
        policy: who may see and act (default :class:`OpenPolicy`: everyone is admin; bind to
            loopback only).
        queues: queues to show besides those workers consume and the app routes to.
        refresh_s: how often pages refresh their live part (0: never).
    """
    return Dashboard(app, policy or OpenPolicy(), list(queues), refresh_s).asgi


class Dashboard:
    """Holds the app's reader, the policy and the templates; builds the Starlette app."""

    def __init__(self, app: Celeriac, policy: Policy, queues: list[str], refresh_s: float) -> None:
        self.data = DashboardData(app, queues)
        self.app = app
        self.policy = policy
        self.refresh_s = refresh_s
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html", "xml"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ts"] = ts
        self.env.filters["age"] = age
        self.env.filters["dur"] = dur
        self.env.filters["num"] = num
        from .metrics import metrics_response
        from .operations import Operations

        self.operations = Operations(self)
        v = self._view
        routes = [
            *policy.routes(),
            Route("/", v(self.overview)),
            Route("/queues", v(self.queues_page)),
            Route("/workers", v(self.workers_page)),
            Route("/tasks", v(self.tasks_page)),
            Route("/tasks/{task_id:path}/revoke", v(self.revoke, "admin"), methods=["POST"]),
            Route("/tasks/{task_id:path}/retry", v(self.retry, "admin"), methods=["POST"]),
            Route("/tasks/{task_id:path}", v(self.task_page)),
            Route("/failures", v(self.failures_page)),
            Route("/dead-letters", v(self.dead_page)),
            Route("/dead-letters/{queue}/replay", v(self.replay, "admin"), methods=["POST"]),
            Route("/dead-letters/{queue}/purge", v(self.purge_dead, "admin"), methods=["POST"]),
            Route("/api/overview", v(self.api_overview)),
            Route("/api/queues", v(self.api_queues)),
            Route("/api/workers", v(self.api_workers)),
            Route("/api/tasks", v(self.api_tasks)),
            Route("/api/tasks/{task_id:path}/revoke", v(self.revoke, "admin"), methods=["POST"]),
            Route("/api/tasks/{task_id:path}/retry", v(self.retry, "admin"), methods=["POST"]),
            Route("/api/tasks/{task_id:path}", v(self.api_task)),
            Route("/api/failures", v(self.api_failures)),
            Route("/api/series", v(self.api_series)),
            Route("/api/dead-letters/{queue}", v(self.api_dead)),
            Route("/api/dead-letters/{queue}/replay", v(self.replay, "admin"), methods=["POST"]),
            Route("/api/dead-letters/{queue}/purge", v(self.purge_dead, "admin"), methods=["POST"]),
            *self.operations.routes(),
            Route("/metrics", v(lambda r: metrics_response(self.data))),
            Route("/healthz", lambda r: PlainTextResponse("ok")),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.asgi = Starlette(routes=routes, middleware=list(policy.middleware()))
        self.asgi.state.dashboard = self

    # ---- plumbing ----------------------------------------------------------------------------------
    def _view(
        self, fn: Callable[[Request], Response], need: Role = "read"
    ) -> Callable[[Request], Awaitable[Response]]:
        """``fn`` behind the policy: a role for everything, admin and the CSRF check for actions.
        ``fn`` runs in the thread pool (it does blocking Redis reads); a POST body is read first
        (``request.state.body``) so that a sync handler and the policy's CSRF check can use it."""

        async def endpoint(request: Request) -> Response:
            request.state.body = await request.body() if request.method == "POST" else b""
            role = self.policy.role(request)
            api = request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/")
            if role is None:
                login = None if api else self.policy.login_url(request)
                if login:
                    return RedirectResponse(login, status_code=303)
                return _error(request, 401, "sign in to see the dashboard", api)
            if need == "admin":
                if role != "admin":
                    return _error(request, 403, "this action needs the admin role", api)
                try:
                    self.policy.check_action(request)
                except HTTPException as exc:
                    return _error(request, exc.status_code, str(exc.detail), api)
            request.state.role = role
            try:
                return await run_in_threadpool(fn, request)
            except BadRequest as exc:
                return _error(request, 400, str(exc), api, self)
            except (CeleriacError, RedisError, OSError) as exc:
                # Redis down or refusing: say so (password-free), never a traceback
                text = redact(str(exc)) or type(exc).__name__
                return _error(request, 503, f"cannot read Redis: {text}", api, self)

        return endpoint

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        ctx = {
            "request": request,
            "root": root,
            "version": __version__,
            "role": getattr(request.state, "role", None),
            "refresh_s": self.refresh_s,
            "path": request.url.path[len(root) :] or "/",
            "csrf_field": Markup(""),
            **self.policy.template_context(request),
            **context,
        }
        html = self.env.get_template(template).render(ctx)
        return HTMLResponse(html, status_code=status)

    # ---- pages -------------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        window = choice(request, "window", ("hour", "day", "week"), "hour")
        data = self.data
        queues = data.queues()
        workers = data.workers()
        s = data.series(window)
        charts = {
            "throughput": svg.bars(
                s.starts,
                [
                    ("succeeded", s.counts["SUCCESS"], "ok"),
                    ("retried", s.counts["RETRY"], "retry"),
                    ("failed", s.failures, "bad"),
                ],
                f"Outcomes per {'minute' if s.resolution == 'm' else 'hour'}",
            ),
            "runtime": svg.bars(
                s.starts,
                [("p95 runtime", [v or 0 for v in s.percentile_s(0.95)], "rt")],
                "Runtime p95 (upper bucket bound)",
                "s",
            ),
        }
        return self.render(
            request,
            "overview.html",
            queues=queues,
            workers=workers,
            window=window,
            charts=charts,
            totals={"outcomes": sum(s.total), "failures": sum(s.failures)},
        )

    def queues_page(self, request: Request) -> Response:
        return self.render(request, "queues.html", queues=self.data.queues())

    def workers_page(self, request: Request) -> Response:
        workers = self.data.workers()
        page = max(0, int_param(request, "page", 0))
        size = 100
        return self.render(
            request,
            "workers.html",
            workers=workers[page * size : (page + 1) * size],
            total=len(workers),
            now=time.time(),
            page=page,
            pages=(len(workers) + size - 1) // size,
        )

    def tasks_page(self, request: Request) -> Response:
        task_id = request.query_params.get("id", "").strip()
        if task_id:
            root = request.scope.get("root_path", "")
            return RedirectResponse(f"{root}/tasks/{quote(task_id)}", status_code=303)
        f = self._filters(request)
        page = self.data.tasks(**f)
        return self.render(
            request,
            "tasks.html",
            page=page,
            filters=f,
            states=STATES,
            queues=self.data.queue_names(),
            query={
                k: request.query_params.get(k, "")
                for k in ("state", "name", "queue", "exc", "since", "until", "limit")
            },
            page_sizes=PAGE_SIZES,
        )

    def task_page(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        timeline, result = self.data.task(task_id)
        latest = timeline[-1] if timeline else None
        workflow = self.data.workflow(task_id, latest)
        if not timeline and result is None:
            return self.render(
                request,
                "task.html",
                status=200 if workflow else 404,  # a group's or chord's id: its members
                task_id=task_id,
                timeline=[],
                latest=None,
                result=None,
                workflow=workflow,
                done=request.query_params.get("done"),
            )
        return self.render(
            request,
            "task.html",
            task_id=task_id,
            timeline=timeline,
            latest=latest,
            result=result,
            workflow=workflow,
            done=request.query_params.get("done"),
            can_revoke=self._revoker() is not None,
        )

    def failures_page(self, request: Request) -> Response:
        return self.render(request, "failures.html", groups=self.data.failures())

    def dead_page(self, request: Request) -> Response:
        queues = self.data.queues()
        names = [q.name for q in queues]
        queue = request.query_params.get("queue") or next(
            (q.name for q in queues if q.dead), names[0] if names else ""
        )
        if queue and queue not in names:
            raise BadRequest(f"unknown queue {queue!r}")
        letters, after = (
            self.data.dead_letters(queue, request.query_params.get("after"), limit(request))
            if queue
            else ([], None)
        )
        return self.render(
            request,
            "dead_letters.html",
            queues=queues,
            queue=queue,
            letters=letters,
            after=after,
            done=request.query_params.get("done"),
        )

    # ---- actions (admin) ---------------------------------------------------------------------------
    def _revoker(self) -> Callable[[str], Any] | None:
        control = getattr(self.app, "control", None)
        revoke = getattr(control, "revoke", None) or getattr(self.app, "revoke", None)
        return revoke if callable(revoke) else None

    def revoke(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        revoke = self._revoker()
        if revoke is None:
            return _action_done(
                request, f"/tasks/{quote(task_id)}", "revoke is not available in this version", 501
            )
        revoke(task_id)
        return _action_done(request, f"/tasks/{quote(task_id)}", "revoked")

    def retry(self, request: Request) -> Response:
        """Send the failed task's message again, as it was sent (same id and arguments)."""
        from ..broker.base import Enqueue

        task_id = request.path_params["task_id"]
        found = self.data.reader.failed_message(task_id, self.data.queue_names())
        if found is None:
            return _action_done(
                request, f"/tasks/{quote(task_id)}", "no recorded failure of this task to retry", 404
            )
        queue, message = found
        self.app.broker.enqueue(Enqueue(queue, message))
        return _action_done(request, f"/tasks/{quote(task_id)}", f"sent again to {queue}")

    def replay(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        form = _form(request)
        entry_id = form.get("entry_id") or None
        count = 1 if entry_id else int_value(form.get("count"), 1_000_000)
        n = self.app.broker.replay_dead(queue, count, entry_id)
        return _action_done(request, f"/dead-letters?queue={quote(queue)}", f"replayed {n}")

    def purge_dead(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        n = self.app.broker.purge_dead(queue)
        return _action_done(request, f"/dead-letters?queue={quote(queue)}", f"purged {n}")

    # ---- JSON API ----------------------------------------------------------------------------------
    def api_overview(self, request: Request) -> Response:
        return JSONResponse(self.data.overview(choice(request, "window", ("hour", "day", "week"), "hour")))

    def api_queues(self, request: Request) -> Response:
        return JSONResponse({"queues": [asdict(q) for q in self.data.queues()]})

    def api_workers(self, request: Request) -> Response:
        return JSONResponse({"workers": [asdict(w) for w in self.data.workers()]})

    def api_tasks(self, request: Request) -> Response:
        page = self.data.tasks(**self._filters(request))
        return JSONResponse(
            {
                "tasks": [r.as_json() for r in page.records],
                "next_cursor": page.next_cursor,
                "scanned": page.scanned,
                "partial": page.partial,
            }
        )

    def api_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        timeline, result = self.data.task(task_id)
        workflow = self.data.workflow(task_id, timeline[-1] if timeline else None)
        if not timeline and result is None and workflow is None:
            return JSONResponse({"error": f"no task {task_id!r} recorded"}, status_code=404)
        latest = timeline[-1].as_json() if timeline else None
        return JSONResponse(
            {
                "id": task_id,
                "latest": latest,
                "timeline": [r.as_json() for r in timeline],
                "result": result,
                "workflow": workflow,
            }
        )

    def api_failures(self, request: Request) -> Response:
        return JSONResponse({"groups": self.data.failures()})

    def api_series(self, request: Request) -> Response:
        window = choice(request, "window", ("hour", "day", "week"), "hour")
        s = self.data.series(
            window, request.query_params.get("name") or "*", request.query_params.get("queue") or None
        )
        return JSONResponse(series_json(s))

    def api_dead(self, request: Request) -> Response:
        letters, after = self.data.dead_letters(
            request.path_params["queue"], request.query_params.get("after"), limit(request)
        )
        return JSONResponse({"dead_letters": letters, "next_after": after})

    # ---- helpers -----------------------------------------------------------------------------------
    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        state = q.get("state") or None
        if state is not None and state not in STATES:
            raise BadRequest(f"unknown state {state!r}: one of {', '.join(STATES)}")
        queue = q.get("queue") or None
        return {
            "queue": queue,
            "state": state,
            "name": q.get("name") or None,
            "exception_type": q.get("exc") or None,
            "since_ms": time_param(q.get("since")),
            "until_ms": time_param(q.get("until")),
            "cursor": q.get("cursor") or None,
            "limit": limit(request),
        }


def _error(request: Request, status: int, message: str, api: bool, dash: Dashboard | None = None) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    dash = dash or request.app.state.dashboard
    return dash.render(request, "error.html", status=status, status_code=status, message=message)


def _form(request: Request) -> dict[str, str]:
    # sync endpoints cannot await request.form(): parse the body Starlette already read for us
    from urllib.parse import parse_qs

    body = getattr(request.state, "body", b"")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


__all__ = ["Dashboard", "create_app"]
