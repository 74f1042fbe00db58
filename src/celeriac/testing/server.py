"""Start private ``redis-server`` processes on free loopback ports (tests, demo, benchmarks).

A Redis already listening on 6379 belongs to someone else: celeriac's tests and tools never use it.
Each :class:`RedisServer` gets its own port and its own temporary directory, so a test may kill,
restart, fill or reconfigure it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str | None:
    """Path of ``redis-server``, or None when it is not installed."""
    return os.environ.get("CELERIAC_REDIS_SERVER") or shutil.which("redis-server")


class RedisServer:
    """A ``redis-server`` child process on a free loopback port.

    Args:
        args: extra server arguments (``["--maxmemory", "10mb"]``, ``["--appendonly", "yes"]``).
        port: a fixed port (default: a free one); kept across :meth:`restart`.
    """

    def __init__(self, args: Sequence[str] = (), port: int | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.args = list(args)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="celeriac-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            *self.args,
        ]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            if self._ping():
                return self
            time.sleep(0.01)  # startup has no event to await; bounded by timeout_s
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (data not on disk is lost unless AOF is on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> RedisServer:
        """Kill and start again on the same port and directory."""
        self.kill()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
