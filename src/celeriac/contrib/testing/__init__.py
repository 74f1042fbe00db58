"""Celery's ``celery.contrib.testing`` under celeriac's name: :func:`worker.start_worker`."""
