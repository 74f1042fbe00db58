"""``python -m celeriac.cli``: the same as the ``celeriac`` command."""

from . import main

main(prog_name="celeriac")
