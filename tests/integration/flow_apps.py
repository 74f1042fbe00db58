"""An app for the slow periodic and flow-control tests on real worker processes (settings from the
environment: CELERIAC_BROKER_URL, CELERIAC_LEASE_S). Tasks record what they do in Redis."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from celeriac import Celeriac

app = Celeriac("fapp")
app.conf.beat_schedule = {"every-second": {"task": "fapp.slot", "schedule": 1.0}}
_r = redis.Redis.from_url(app.conf.broker_url)


@app.task(name="fapp.slot", bind=True)
def slot(self) -> None:  # type: ignore[no-untyped-def]
    """One periodic run: its id (one per slot) and delivery count, and when it started."""
    _r.rpush("slots", f"{self.request.id} {self.request.delivery} {time.time():.4f}")


@app.task(name="fapp.limited", rate_limit="50/s")
def limited(i: int) -> None:
    _r.rpush("starts", f"{time.time():.4f}")


@app.task(name="fapp.plain")
def plain(i: int) -> None:
    _r.rpush("plain", f"{time.time():.4f}")


@app.task(name="fapp.conc", max_concurrency=3)
async def conc(i: int) -> None:
    _r.rpush("conc", f"start {os.getpid()} {time.time():.4f} {i}")
    await asyncio.sleep(0.3)
    _r.rpush("conc", f"end {os.getpid()} {time.time():.4f} {i}")
