"""The dashboard's pages, JSON API, actions and /metrics against a real Redis and a real worker."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from celeriac import Celeriac
from celeriac.dashboard import Policy, create_app
from celeriac.monitor import MonitorReader

pytestmark = pytest.mark.redis

XSS = "<script>alert('xss')</script>"


@pytest.fixture
def ran(app: Celeriac, client: redis.Redis, thread_worker: Any) -> dict[str, Any]:
    """Tasks that succeeded, failed (with an XSS payload in args and message) and were dead-lettered."""

    @app.task(name="shop.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="shop.charge")
    def charge(card: str, password: str = "") -> None:
        raise ValueError(f"declined {card}")

    @app.task(name="shop.mail", max_retries=0, autoretry_for=(OSError,))
    def mail(to: str) -> None:
        raise OSError("smtp down")

    w = thread_worker(app)
    for i in range(20):
        add.delay(i, i)
    failed = charge.delay(XSS, password="hunter2")
    dead = mail.delay("a@b.c")
    w.wait_outcomes(lambda o: len(o) >= 22)
    reader = MonitorReader(client)
    deadline = time.monotonic() + 10
    while len(reader.page(["default"], limit=100).records) < 22 and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"failed": failed.id, "dead": dead.id, "worker": w}


def test_every_page_renders(app: Celeriac, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    for path in [
        "/",
        "/?window=day",
        "/?window=week",
        "/queues",
        "/workers",
        "/tasks",
        "/tasks?state=FAILURE",
        "/tasks?name=shop.add&limit=5",
        "/tasks?exc=builtins.ValueError",
        "/tasks?since=2000-01-01T00:00&until=2999-01-01T00:00",
        f"/tasks/{ran['failed']}",
        "/failures",
        "/dead-letters",
        "/dead-letters?queue=default",
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/static/favicon.svg",
        "/healthz",
    ]:
        r = c.get(path)
        assert r.status_code == 200, path
    overview = c.get("/").text
    assert "default" in overview and "<svg" in overview
    failed_page = c.get(f"/tasks/{ran['failed']}").text
    assert "Traceback" in failed_page and "builtins.ValueError" in failed_page
    assert "&#39;***&#39;" in failed_page  # the password kwarg is redacted
    failures = c.get("/failures").text
    assert "shop.charge" in failures and "shop.mail" in failures
    assert ran["dead"] in c.get("/dead-letters?queue=default").text


def test_user_supplied_text_is_escaped(app: Celeriac, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    for path in ["/tasks", f"/tasks/{ran['failed']}", "/failures", "/tasks?state=FAILURE"]:
        html = c.get(path).text
        assert XSS not in html, path
        assert "alert(" not in html or "&lt;script&gt;alert(" in html, path
    assert "&lt;script&gt;alert(" in c.get(f"/tasks/{ran['failed']}").text
    # a task id in the URL is user-supplied too
    r = c.get("/tasks/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert r.status_code == 404 and "<script>alert(1)" not in r.text


def test_json_api(app: Celeriac, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    queues = c.get("/api/queues").json()["queues"]
    assert [q["name"] for q in queues] == ["default"] and queues[0]["dead"] == 1
    workers = c.get("/api/workers").json()["workers"]
    assert workers[0]["worker_id"] == ran["worker"].worker.worker_id and workers[0]["rss_mb"] > 1
    page = c.get("/api/tasks?limit=10").json()
    assert len(page["tasks"]) == 10 and page["next_cursor"]
    rest = c.get(f"/api/tasks?limit=100&cursor={page['next_cursor']}").json()
    ids = [t["id"] for t in page["tasks"] + rest["tasks"]]
    assert len(ids) == len(set(ids)) == 22 and rest["next_cursor"] is None
    task = c.get(f"/api/tasks/{ran['failed']}").json()
    assert task["latest"]["state"] == "FAILURE" and task["latest"]["kwargs"] == "{'password': '***'}"
    assert task["latest"]["args"] == repr((XSS,))
    assert c.get("/api/tasks/nope").status_code == 404
    groups = c.get("/api/failures").json()["groups"]
    assert {(g["name"], g["exception_type"]) for g in groups} == {
        ("shop.charge", "builtins.ValueError"),
        ("shop.mail", "builtins.OSError"),
    }
    series = c.get("/api/series?window=hour").json()
    assert sum(series["total"]) == 22 and sum(series["failures"]) == 2
    overview = c.get("/api/overview").json()
    assert overview["workers"] == 1
    dead = c.get("/api/dead-letters/default").json()["dead_letters"]
    assert [d["task_id"] for d in dead] == [ran["dead"]]
    assert c.get("/api/tasks?state=NOPE").status_code == 400
    assert c.get("/api/tasks?limit=0").status_code == 400
    assert c.get("/api/tasks?since=yesterday").status_code == 400


def test_actions_retry_replay_purge(app: Celeriac, client: redis.Redis, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    w = ran["worker"]
    # retry a failed task from its page: the same message runs again
    r = c.post(f"/tasks/{ran['failed']}/retry", follow_redirects=False)
    assert r.status_code == 303 and "sent%20again" in r.headers["location"]
    w.wait_outcomes(lambda o: sum(x.task_id == ran["failed"] for x in o) >= 2)
    # replay one dead letter, then purge
    dead = c.get("/api/dead-letters/default").json()["dead_letters"]
    r = c.post("/api/dead-letters/default/replay", data={"entry_id": dead[0]["entry_id"]})
    assert r.json() == {"ok": True, "message": "replayed 1"}
    w.wait_outcomes(lambda o: sum(x.task_id == ran["dead"] for x in o) >= 2)
    deadline = time.monotonic() + 10
    while app.broker.stats("default").dead < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert c.post("/api/dead-letters/default/purge").json()["message"] == "purged 1"
    assert app.broker.stats("default").dead == 0
    assert c.post("/api/tasks/nope/retry").status_code == 404
    # revoke is answered even before the app can revoke
    assert c.post(f"/api/tasks/{ran['failed']}/revoke").status_code in (200, 501)


class ReadOnly(Policy):
    def role(self, request: Request) -> Any:
        return "read" if request.headers.get("x-user") else None


def test_roles_and_csrf(app: Celeriac, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app, policy=ReadOnly()))
    assert c.get("/api/queues").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/queues", headers={"x-user": "ann"}).status_code == 200
    r = c.post("/api/dead-letters/default/purge", headers={"x-user": "ann"})
    assert r.status_code == 403 and app.broker.stats("default").dead == 1
    assert "Purge" not in c.get("/dead-letters", headers={"x-user": "ann"}).text  # no action shown
    # the default policy refuses a cross-site POST (a page elsewhere posting to the dashboard)
    open_app = TestClient(create_app(app))
    assert (
        open_app.post("/api/dead-letters/default/purge", headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    r = open_app.post("/api/dead-letters/default/purge", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and app.broker.stats("default").dead == 1
    assert open_app.get("/dead-letters/default/purge").status_code == 405  # actions are POST only


def test_mounted_under_a_prefix(app: Celeriac, ran: dict[str, Any]) -> None:
    outer = Starlette(routes=[Mount("/ops/celeriac", create_app(app))])
    c = TestClient(outer)
    html = c.get("/ops/celeriac/").text
    assert 'href="/ops/celeriac/static/dashboard.css"' in html and 'href="/ops/celeriac/tasks"' in html
    assert c.get("/ops/celeriac/static/dashboard.js").status_code == 200
    assert c.get(f"/ops/celeriac/api/tasks/{ran['failed']}").status_code == 200
    r = c.get(f"/ops/celeriac/tasks?id={ran['failed']}", follow_redirects=False)
    assert r.headers["location"] == f"/ops/celeriac/tasks/{ran['failed']}"


def test_metrics(app: Celeriac, ran: dict[str, Any]) -> None:
    c = TestClient(create_app(app))
    text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert (
        samples[("celeriac_tasks_total", (("queue", "default"), ("state", "SUCCESS"), ("task", "shop.add")))]
        == 20
    )
    assert (
        samples[
            ("celeriac_tasks_total", (("queue", "default"), ("state", "FAILURE"), ("task", "shop.charge")))
        ]
        == 1
    )
    assert (
        samples[("celeriac_tasks_total", (("queue", "default"), ("state", "DEAD"), ("task", "shop.mail")))]
        == 1
    )
    assert samples[("celeriac_queue_length", (("queue", "default"), ("state", "dead")))] == 1
    assert samples[("celeriac_dead_letters", (("queue", "default"),))] == 1
    assert samples[("celeriac_workers", ())] == 1
    count = samples[("celeriac_task_runtime_seconds_count", (("queue", "default"), ("task", "shop.add")))]
    assert count == 20
    assert all("worker" not in s.labels for s in families["celeriac_tasks"].samples)  # no hostname label
    # a second dashboard (another replica) serves the same counters
    other = TestClient(create_app(app)).get("/metrics").text
    assert [line for line in other.splitlines() if "tasks_total" in line] == [
        line for line in text.splitlines() if "tasks_total" in line
    ]


def test_redis_down_is_a_clear_503(fresh_redis: Any) -> None:
    app = Celeriac("down", broker=fresh_redis.url)
    c = TestClient(create_app(app))
    assert c.get("/api/queues").status_code == 200
    fresh_redis.stop()
    for path in ("/", "/api/queues", "/tasks", "/metrics"):
        r = c.get(path)
        assert r.status_code == 503, path
        assert "cannot read Redis" in r.text
    app.close()


def test_revoke_from_the_dashboard(app: Celeriac, client: redis.Redis, thread_worker: Any) -> None:
    """Revoke a queued task from its page: it never runs, and its REVOKED outcome is recorded."""

    @app.task(name="shop.later")
    def later() -> None:
        raise AssertionError("a revoked task ran")

    r = later.delay()
    c = TestClient(create_app(app))
    assert c.post(f"/api/tasks/{r.id}/revoke").json() == {"ok": True, "message": "revoked"}
    w = thread_worker(app)
    w.wait_outcomes(lambda o: any(x.task_id == r.id for x in o))
    reader = MonitorReader(client)
    deadline = time.monotonic() + 10
    while not reader.task(r.id, ["default"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [x.state for x in reader.task(r.id, ["default"])] == ["REVOKED"]
    assert "Revoke" in c.get(f"/tasks/{r.id}").text
