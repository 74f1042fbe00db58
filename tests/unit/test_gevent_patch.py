"""The gevent launcher's decision (patch or not), and the pool's refusal to run unpatched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from celeriac import Celeriac, ConfigurationError
from celeriac.gevent_patch import check_patched, requested
from celeriac.worker.pools import make_pool


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["worker", "-A", "x:app", "-P", "gevent"], {}, True),
        (["-A", "x:app", "worker", "--pool", "gevent"], {}, True),
        (["worker", "--pool=gevent"], {}, True),
        (["worker", "-Pgevent"], {}, True),
        (["worker", "-P", "gevent", "-P", "threads"], {}, False),  # the last one wins, as in click
        (["worker", "-P", "threads"], {"CELERIAC_WORKER_POOL": "gevent"}, False),  # typed wins
        (["worker"], {"CELERIAC_WORKER_POOL": "gevent"}, True),
        (["worker"], {"CELERIAC_POOL": "gevent"}, True),
        (["worker"], {}, False),
        (["status", "-P", "gevent"], {}, False),  # only the worker command
        (["call", "x"], {"CELERIAC_POOL": "gevent"}, False),
    ],
)
def test_requested(argv: list[str], env: dict[str, str], expected: bool) -> None:
    assert requested(argv, env) is expected


def test_an_unpatched_process_is_refused() -> None:
    pytest.importorskip("gevent")
    pool = make_pool("gevent", 10, Celeriac("t", broker="memory://"))
    with pytest.raises(ConfigurationError, match=r"monkey.patch_all\(\)` in the first lines"):
        pool.prepare()
    with pytest.raises(ConfigurationError, match="not patched"):
        check_patched()


def test_without_gevent_the_pool_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['gevent'] = None\n"
        "from celeriac import Celeriac, ConfigurationError\n"
        "from celeriac.worker.pools import make_pool\n"
        "try:\n"
        "    make_pool('gevent', 10, Celeriac('t', broker='memory://'))\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'celeriac[gevent]'" in out


def test_the_launcher_patches_before_anything_else_is_imported() -> None:
    pytest.importorskip("gevent")
    code = (
        "import sys\n"
        "sys.argv = ['celeriac', 'worker', '-P', 'gevent']\n"
        "import celeriac.cli\n"
        "loaded = sorted(m for m in ('asyncio', 'redis', 'click', 'ssl', 'celeriac.app') if m in sys.modules)\n"
        "from celeriac.gevent_patch import patch_if_requested\n"
        "assert patch_if_requested()\n"
        "from gevent import monkey\n"
        "print(loaded, monkey.is_module_patched('socket'), monkey.is_module_patched('ssl'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[] True True"


def test_python_dash_m_celeriac_is_the_command() -> None:
    from celeriac import __version__

    out = subprocess.run(
        [sys.executable, "-m", "celeriac", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert __version__ in out


def test_a_finished_greenlet_wakes_an_idle_loop_without_its_self_pipe() -> None:
    """The loop waits in gevent's selector with nothing else to wake it (no timer, no I/O): the
    finished greenlet's hand-back alone must wake it, by the selector's ready event, not by a write
    to the loop's self-pipe (a system call per batch)."""
    pytest.importorskip("gevent")
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import asyncio, time\n"
        "from celeriac import Celeriac\n"
        "from celeriac.worker.pools import make_pool\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    writes = []\n"
        "    real = loop._write_to_self\n"
        "    loop._write_to_self = lambda: (writes.append(1), real())\n"
        "    pool = make_pool('gevent', 10, Celeriac('t', broker='memory://'))\n"
        "    await pool.start()\n"
        "    values = [await pool.run_sync(lambda: time.sleep(0.01) or 7) for _ in range(3)]\n"
        "    print(values, len(writes))\n"
        "    await pool.close(cold=False)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["[7,", "7,", "7]", "0"]


def test_a_greenlet_serves_call_after_call_until_one_is_killed() -> None:
    """Greenlets are reused between calls; one whose call was killed (the hard limit here) ends,
    and the next call runs in another greenlet, untouched by that kill."""
    pytest.importorskip("gevent")
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import asyncio, time, gevent\n"
        "from celeriac import Celeriac, TimeLimitExceeded\n"
        "from celeriac.worker.limits import TimeLimits\n"
        "from celeriac.worker.pools import make_pool\n"
        "async def main():\n"
        "    pool = make_pool('gevent', 10, Celeriac('t', broker='memory://'))\n"
        "    await pool.start()\n"
        "    me = gevent.getcurrent  # the greenlet itself: kept alive, its id is not reused\n"
        "    first, second = await pool.run_sync(me), await pool.run_sync(me)\n"
        "    try:\n"
        "        await pool.run_sync(lambda: time.sleep(30), TimeLimits(hard_s=0.05))\n"
        "    except TimeLimitExceeded:\n"
        "        killed = True\n"
        "    after = await pool.run_sync(lambda: (time.sleep(0.05), me())[1])\n"
        "    print(first is second, killed, after is not first, pool.abandoned)\n"
        "    await pool.close(cold=False)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["True", "True", "True", "0"]
