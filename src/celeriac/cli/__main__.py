"""``python -m celeriac.cli``: the same as the ``celeriac`` command."""

from . import run

run()
