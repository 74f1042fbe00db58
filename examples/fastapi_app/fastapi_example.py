"""FastAPI with celeriac: send from async endpoints and await results without blocking the event loop.

Run (in this directory, with a Redis at REDIS_URL)::

    celeriac worker -A fastapi_example -P threads
    uvicorn fastapi_example:api

    curl -X POST 'localhost:8000/add?x=2&y=3'          # {"task_id": "..."}
    curl 'localhost:8000/result/<task_id>?timeout=5'    # {"task_id": "...", "value": 5}
    curl -X POST 'localhost:8000/add/wait?x=2&y=3'      # {"value": 5}
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.concurrency import run_in_threadpool

from celeriac import Celeriac
from celeriac.exceptions import ResultTimeout

# `celery` is the name `celeriac worker -A fastapi_example` looks for, as Celery's -A does
celery = Celeriac(
    "fastapi_example",
    broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    task_ignore_result=False,  # these tasks' results are awaited by the endpoints
)


@celery.task
def add(x: int, y: int) -> int:
    return x + y


api = FastAPI()


@api.post("/add")
async def start_add(x: int, y: int) -> dict[str, str]:
    # the send is one Redis call: run it in Starlette's thread pool so that the loop never waits on
    # the network (a Redis failover would otherwise stall every request of this process)
    result = await run_in_threadpool(add.delay, x, y)
    return {"task_id": result.id}


@api.get("/result/{task_id}")
async def get_result(task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    try:
        # aget() waits on an asyncio Redis client: other requests are served meanwhile
        value = await celery.AsyncResult(task_id).aget(timeout=timeout)
    except ResultTimeout:
        raise HTTPException(status_code=404, detail=f"task {task_id} has no result yet") from None
    return {"task_id": task_id, "value": value}


@api.post("/add/wait")
async def add_and_wait(x: int, y: int) -> dict[str, int]:
    result = await run_in_threadpool(add.delay, x, y)
    return {"value": await result}  # `await result` is result.aget() without a timeout
