"""Celery's Django recipe with one edit: ``from celery import Celery`` -> ``from celeriac import Celery``.

Start a worker in this directory with ``celeriac -A proj worker -l INFO``.
"""

import os

from celeriac import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# every CELERY_-prefixed Django setting, read under its Celery name (CELERY_BROKER_URL -> broker_url)
app.config_from_object("django.conf:settings", namespace="CELERY")

# the tasks module of every installed app, imported when a worker starts
app.autodiscover_tasks()
