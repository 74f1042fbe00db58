"""Integrations with Celery's module paths: ``celeriac.contrib.pytest`` (Celery's pytest fixtures),
``celeriac.contrib.testing.worker`` (``start_worker``), ``celeriac.contrib.django``,
``celeriac.contrib.flask``."""
