"""Start private ``redis-server`` processes on free loopback ports (tests, demo, benchmarks).

A Redis already listening on 6379 belongs to someone else: celeriac's tests and tools never use it.
Each :class:`RedisServer` gets its own port and its own temporary directory, so a test may kill,
restart, fill or reconfigure it.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(process: subprocess.Popen[bytes] | None, grace_s: float = 5.0) -> None:
    """SIGTERM ``process`` if it runs, and SIGKILL it if it has not exited within ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_server_binary() -> str | None:
    """Path of ``redis-server``, or None when it is not installed."""
    return os.environ.get("CELERIAC_REDIS_SERVER") or shutil.which("redis-server")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS-only server: its certificate and key, and the CA that signed it.

    ``client_cert_file``/``client_key_file``: a client certificate (signed by the same CA) that the
    server then requires (``--tls-auth-clients yes``); without them clients are not authenticated.
    """

    cert_file: str
    key_file: str
    ca_file: str
    client_cert_file: str | None = None
    client_key_file: str | None = None


class RedisServer:
    """A ``redis-server`` child process on a free loopback port.

    Args:
        args: extra server arguments (``["--maxmemory", "10mb"]``, ``["--appendonly", "yes"]``).
        port: a fixed port (default: a free one); kept across :meth:`restart`.
        tls: serve TLS only on the port (``--port 0 --tls-port``); :attr:`url` is then a ``rediss://``
            URL that trusts the CA.
        appendfsync: turn the append-only file on with this fsync policy (``"always"``,
            ``"everysec"`` or ``"no"``). Its directory is kept across :meth:`kill` and :meth:`restart`,
            so a restarted server reloads what was written. ``"always"`` fsyncs before replying: a
            write a client saw acknowledged survives ``kill -9`` of the server (and of the machine);
            ``"everysec"`` may lose up to a second of acknowledged writes on a machine crash.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        port: int | None = None,
        tls: TLSFiles | None = None,
        appendfsync: str | None = None,
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.args = list(args)
        self.port = port or free_port()
        self.tls = tls
        if appendfsync not in (None, "always", "everysec", "no"):
            raise ValueError(f"appendfsync must be 'always', 'everysec' or 'no', not {appendfsync!r}")
        self.appendfsync = appendfsync
        self.dir = Path(tempfile.mkdtemp(prefix="celeriac-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        query = f"ssl_ca_certs={quote(self.tls.ca_file)}"
        if self.tls.client_cert_file and self.tls.client_key_file:
            query += f"&ssl_certfile={quote(self.tls.client_cert_file)}"
            query += f"&ssl_keyfile={quote(self.tls.client_key_file)}"
        return f"rediss://localhost:{self.port}/0?{query}"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        t = self.tls
        auth = "yes" if t.client_cert_file else "no"
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", t.cert_file, "--tls-key-file", t.key_file),
            *("--tls-ca-cert-file", t.ca_file, "--tls-auth-clients", auth),
        ]

    def _persistence_args(self) -> list[str]:
        # never RDB snapshots: a fork per save would disturb timing-sensitive tests for nothing
        if self.appendfsync is None:
            return ["--appendonly", "no"]
        return ["--appendonly", "yes", "--appendfsync", self.appendfsync]

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING (after loading its append-only file).

        After :meth:`kill`, starts it again on the same port and directory (as :meth:`restart`)."""
        if self.process is not None and self.process.poll() is not None and self.process.stderr:
            self.process.stderr.close()  # the previous run's pipe
        cmd = [
            self.binary,
            *self._listen_args(),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            *self._persistence_args(),
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
        """True once the server answers: PONG, or NOAUTH from a server that requires a password."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as raw, self._wrap(raw) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:  # ssl.SSLError included
            return False

    def _wrap(self, raw: socket.socket) -> socket.socket:
        if self.tls is None:
            return raw
        context = ssl.create_default_context(cafile=self.tls.ca_file)
        if self.tls.client_cert_file and self.tls.client_key_file:
            context.load_cert_chain(self.tls.client_cert_file, self.tls.client_key_file)
        return context.wrap_socket(raw, server_hostname="localhost")

    def kill(self) -> None:
        """SIGKILL the server (data not on disk is lost unless AOF is on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        terminate(self.process)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> RedisServer:
        """Kill and start again on the same port and directory."""
        self.kill()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
