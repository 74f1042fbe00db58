"""The worker's entry point: ``celeriac -A make_celery worker`` (Flask's layout)."""

from flask_example import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
