"""The ``processes`` pool: sync tasks in child processes.

* ``pool.py``        the pool, on the worker's loop: children, runs, limits, recycling; it decides
                     whether the fork server is lean or forked from the worker;
* ``forkserver.py``  the fork server: forks children on request, reports their exits;
* ``lean.py``        a lean fork server: a fresh interpreter that imports only the app;
* ``child.py``       the loop each child runs;
* ``ipc.py``         the one framing all of them speak.

Dependencies point one way: ``pool → lean → child → forkserver → ipc``. This package imports nothing
on its own: a child imports only ``child.py`` and what it needs.
"""
