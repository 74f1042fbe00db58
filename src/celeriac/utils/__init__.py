"""Celery's ``celery.utils`` paths that ports use (``celeriac.utils.log.get_task_logger``)."""
