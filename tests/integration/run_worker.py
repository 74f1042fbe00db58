"""Run a worker of tests/integration/apps.py in this process: ``python run_worker.py QUEUES CONCURRENCY``."""

from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.integration.apps import app

from celeriac import Worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    queues = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    Worker(app, queues=queues, concurrency=concurrency, pool="threads").start()
