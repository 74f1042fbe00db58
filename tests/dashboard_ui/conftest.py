"""Fixtures of the dashboard UI tests: a real Redis, a real worker, the dashboard served by uvicorn on
a free loopback port, and Debian's Chromium driven by Playwright.

Chromium comes from the distribution (``apt-get install chromium``: ``scripts/_setup.sh`` does it when
root); Playwright's own browser download is never used. Without ``/usr/bin/chromium`` the browser tests
skip, except in CI (``CI`` set), where they fail. Every page a test opens is watched: a request to
anything but 127.0.0.1 is blocked and fails the test, and so does a console error or an uncaught
exception. Screenshots go to ``$CELERIAC_TEST_OUTPUT/browser`` (default ``test-output/browser``,
git-ignored).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from celeriac import Celeriac
from celeriac.dashboard import create_app
from celeriac.dashboard.auth import AuthSettings
from celeriac.dashboard.security import AuthPolicy
from celeriac.testing import ThreadWorker

from .servers import serve

CHROMIUM = os.environ.get("CELERIAC_CHROMIUM", "/usr/bin/chromium")
# quiet, offline, no sandbox (root in a container); see the research notes on this machine
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("CELERIAC_TEST_OUTPUT", REPO / "test-output")) / "browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module. Not per session: Playwright's sync API keeps an event
    loop running in this thread while it is open, and the asyncio tests that follow need none."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install chromium (scripts/_setup.sh does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that a test must not let pass: requests off the host, console errors."""

    offsite: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    #: console errors a test provokes on purpose (a refused forged POST logs its 403)
    expected: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.offsite, f"requests left the host: {self.offsite}"
        unexpected = [e for e in self.console_errors if not any(x in e for x in self.expected)]
        assert not unexpected, f"console errors: {unexpected}"
        assert not self.page_errors, f"uncaught page errors: {self.page_errors}"


def open_page(browser: Any, **context_options: Any) -> tuple[Any, Any]:
    """A new browser context and page, watched (``page.watch``): every request must go to 127.0.0.1
    (others are blocked and recorded), console errors and page errors are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
    watch = Watch()

    def route(r: Any) -> None:
        url = r.request.url
        watch.requests.append(url)
        host = urlsplit(url).hostname
        if url.startswith(("data:", "about:")) or host == "127.0.0.1":
            r.continue_()
        else:
            watch.offsite.append(url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: watch.page_errors.append(str(e)))
    pg.watch = watch
    return context, pg


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh watched page (see :func:`open_page`); its watch is checked at the end of the test."""
    context, pg = open_page(browser)
    yield pg
    context.close()
    pg.watch.check()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``shot(page, "name")`` saves a full-page PNG under the test output folder."""

    def take(pg: Any, name: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{request.node.name}-{name}.png".replace("/", "_")
        pg.screenshot(path=str(path), full_page=True)
        return path

    return take


UI_TASKS = """
import redis
from celeriac import Celeriac, Reject

app = Celeriac("ui")
_r = redis.Redis.from_url(app.conf.broker_url)


@app.task(name="ui.add", ignore_result=False)
def add(x, y):
    return x + y


@app.task(name="ui.charge", ignore_result=False)
def charge(order, amount):
    raise ValueError(f"card declined for order {order}")


@app.task(name="ui.gate")
def gate(key):
    # dead-lettered until the test opens the gate; replayed from the dashboard, it then succeeds
    if not _r.exists(key):
        raise Reject("gate closed")
    _r.rpush("ui:passed", key)


@app.task(name="ui.echo", ignore_result=False)
def echo(*args, **kwargs):
    raise RuntimeError("shown with its arguments")


@app.task(name="ui.total")
def total(values):
    return sum(values)


@app.task(name="ui.hold", max_concurrency=1, rate_limit="100/s")
def hold(key):
    # holds its concurrency slot until the test sets ``key`` (at most 20 s)
    import time

    deadline = time.monotonic() + 20
    while not _r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
"""


@dataclass
class Stack:
    """A celeriac app with a worker and its dashboard, all on one private Redis."""

    app: Celeriac
    worker: ThreadWorker
    url: str
    module: Any

    def task(self, name: str) -> Any:
        return self.app.tasks[name]


@pytest.fixture
def ui_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[Any]:
    import importlib
    import secrets
    import sys

    name = f"uitasks_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(UI_TASKS))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    module = importlib.import_module(name)
    yield module
    module.app.close()
    sys.modules.pop(name, None)


@pytest.fixture
def stack_factory(ui_module: Any) -> Iterator[Callable[..., Stack]]:
    """Start the worker and a dashboard (with ``AuthSettings``) on a free loopback port."""
    stops: list[Callable[[], None]] = []

    def start(settings: AuthSettings | None = None) -> Stack:
        app = ui_module.app
        worker = ThreadWorker(app, queues=["default"], concurrency=4, pool="threads").start()
        stops.append(worker.stop)
        server = serve(create_app(app, policy=AuthPolicy(settings or AuthSettings()), refresh_s=0))
        url = server.__enter__()
        stops.append(lambda: server.__exit__(None, None, None))
        return Stack(app, worker, url, ui_module)

    yield start
    for stop in reversed(stops):
        stop()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    """The worker and a dashboard without sign-in (loopback), admin for everyone."""
    return stack_factory()
