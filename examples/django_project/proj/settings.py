"""Settings of the example project (SQLite by default; PostgreSQL when DATABASE_URL says so)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "orders"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "proj.urls"
USE_TZ = True

_CONN_MAX_AGE = os.environ.get("CONN_MAX_AGE", "0")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", BASE_DIR / "db.sqlite3"),
        # seconds a connection is kept between requests (and, in a worker, between tasks); None: forever
        "CONN_MAX_AGE": None
        if os.environ.get("CONN_MAX_AGE") == "none"
        else int(os.environ.get("CONN_MAX_AGE", "0")),
    }
}
if os.environ.get("POSTGRES_DB"):  # the same project on PostgreSQL, when the machine has one
    DATABASES["default"].update(
        ENGINE="django.db.backends.postgresql",
        NAME=os.environ["POSTGRES_DB"],
        HOST=os.environ.get("POSTGRES_HOST", "localhost"),
        USER=os.environ.get("POSTGRES_USER", ""),
        PASSWORD=os.environ.get("POSTGRES_PASSWORD", ""),
    )

# celeriac, under Celery's names with the CELERY_ prefix (proj/celery.py reads them)
CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
