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
