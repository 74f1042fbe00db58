"""Monkey-patching for the ``gevent`` pool, which must happen before anything else is imported.

gevent makes blocking calls (sockets, ``time.sleep``, DNS, ``ssl``, ``subprocess``, locks) yield to
its hub instead of blocking the process, by replacing those functions in the standard library. A
module imported *before* the patch may hold the originals (a lock created at import, a ``from
socket import socket``), and a greenlet that blocks in one of them blocks every greenlet and the
worker's own Redis I/O. So the patch must come first.

``celeriac worker -P gevent`` does it for you: the ``celeriac`` command (and ``python -m celeriac``,
``python -m celeriac.cli``) looks at its arguments, and at ``CELERIAC_WORKER_POOL`` /
``CELERIAC_POOL`` when no ``-P`` is given, and patches before it imports click, asyncio, redis-py or
the app (:func:`patch_if_requested`). This module imports nothing but ``os`` and ``sys`` for that
reason, and so does ``celeriac/__init__.py`` (its names load on first use).

Embedding a gevent worker in your own program: patch in the first lines of the program's entry
module, before any other import::

    from gevent import monkey

    monkey.patch_all()

    from celeriac import Worker  # only now
    from shop.tasks import app

    Worker(app, pool="gevent", concurrency=500).start()

A ``Worker(pool="gevent")`` in a process that was not patched stops at start with a
:class:`~celeriac.exceptions.ConfigurationError` saying so (:func:`check_patched`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

#: environment variables naming the pool of ``celeriac worker`` (the first is the CLI's own)
POOL_ENV = ("CELERIAC_WORKER_POOL", "CELERIAC_POOL")

INSTALL_HINT = "the gevent pool needs gevent: pip install 'celeriac[gevent]'"


def requested(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True when this command line runs ``celeriac worker`` with the gevent pool.

    ``-P gevent``, ``-Pgevent``, ``--pool gevent``, ``--pool=gevent`` (the last one given wins, as
    in click); without any, ``CELERIAC_WORKER_POOL`` or ``CELERIAC_POOL``.
    """
    if "worker" not in argv:
        return False
    pool: str | None = None
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("-P", "--pool") and i + 1 < len(args):
            pool = args[i + 1]
        elif arg.startswith("--pool="):
            pool = arg.partition("=")[2]
        elif arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            pool = arg[2:]
    if pool is None:
        pool = next((environ[name] for name in POOL_ENV if environ.get(name)), None)
    return pool == "gevent"


def patch() -> None:
    """``gevent.monkey.patch_all()``, or exit with an install hint when gevent is missing."""
    try:
        from gevent import monkey
    except ImportError:
        raise SystemExit(f"Error: {INSTALL_HINT}") from None
    monkey.patch_all()


def patch_if_requested(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Patch when the command line asks for the gevent pool (see :func:`requested`). True if it did."""
    if not requested(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ):
        return False
    patch()
    return True


def check_patched() -> None:
    """Raise unless gevent is installed and its monkey-patching is in place (the gevent pool's start).

    Raises:
        ConfigurationError: gevent is missing, or the standard library was not patched.
    """
    from .exceptions import ConfigurationError

    try:
        from gevent import monkey
    except ImportError:
        raise ConfigurationError("pool", INSTALL_HINT) from None
    missing = [
        name for name in ("socket", "time", "threading", "select") if not monkey.is_module_patched(name)
    ]
    if missing:
        raise ConfigurationError(
            "pool",
            "the gevent pool needs gevent's monkey-patching before anything else is imported "
            f"({', '.join(missing)} not patched): run `celeriac worker -P gevent`, or put "
            "`from gevent import monkey; monkey.patch_all()` in the first lines of your program",
        )
