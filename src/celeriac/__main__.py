"""``python -m celeriac``: the same as the ``celeriac`` command."""

from .cli import run

run()
