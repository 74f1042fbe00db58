"""Flask with celeriac, as Flask's "Background Tasks with Celery" pattern (celery -> celeriac).

Run (in examples/flask_app, with a Redis at REDIS_URL)::

    celeriac -A make_celery worker --loglevel INFO
    flask --app flask_example run

    curl -X POST -d a=2 -d b=3 localhost:5000/add      # {"result_id": "..."}
    curl localhost:5000/result/<result_id>              # {"ready": true, "successful": true, "value": 5}
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from celeriac.contrib.flask import celery_init_app


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        GREETING="Hello",
        CELERY={
            "broker_url": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
            "result_backend": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
            "task_ignore_result": True,
        },
    )
    celery_init_app(app)

    from . import tasks

    @app.post("/add")
    def start_add() -> dict[str, Any]:
        a = request.form.get("a", type=int)
        b = request.form.get("b", type=int)
        result = tasks.add_together.delay(a, b)
        return {"result_id": result.id}

    @app.post("/greet")
    def start_greet() -> dict[str, Any]:
        return {"result_id": tasks.greet.delay(request.form["name"]).id}

    @app.get("/result/<id>")
    def task_result(id: str) -> dict[str, Any]:
        result = app.extensions["celery"].AsyncResult(id)
        ready = result.ready()
        return {
            "ready": ready,
            "successful": result.successful() if ready else None,
            "value": result.get(timeout=0) if ready else None,
        }

    return app
