"""A TCP proxy that a test can cut and heal, to put a network partition between a client and Redis.

A worker (or any client) connects to the proxy's loopback port instead of Redis; the proxy forwards
bytes both ways. :meth:`TcpProxy.cut` drops every live connection and, by default, *blackholes* new
ones: they are accepted, whatever the client sends is read and discarded, and nothing ever comes back.
That is what a client sees across a real partition (no reset, no reply), so only its own timeouts can
tell it that something is wrong, which is exactly what a partition test must exercise.
``cut(refuse=True)`` resets new connections at once instead (a server that refuses). :meth:`TcpProxy.heal`
forwards again; it also closes the connections blackholed during the cut, whose requests were
swallowed (their byte streams can never be resumed), so their clients reconnect.

Threads, not asyncio: the proxy must keep running whatever the test's own thread or event loop does
(blocks on a result, kills a process). Two threads per forwarded connection; for tests only.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy"]

_CHUNK = 65_536


class TcpProxy:
    """Forward TCP connections from a free loopback port to ``target`` until cut.

    Args:
        target_host, target_port: the server to forward to (a Redis).
        host: the address to listen on (loopback).

    Use as a context manager (or call :meth:`start` and :meth:`close`)::

        with TcpProxy.for_url(redis_url) as proxy:
            worker = start_worker(broker=proxy.url)
            proxy.cut()   # live connections dropped; new ones accepted but never answered
            ...
            proxy.heal()  # forwarding again

    Attributes:
        accepted: connections accepted so far (forwarded, blackholed or refused).
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.accepted = 0
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(None)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._state = "open"  # "open", "blackhole", "refuse", "closed"
        self._forwarded: set[socket.socket] = set()  # both ends of every forwarded connection
        self._blackholed: set[socket.socket] = set()
        self._url: str | None = None
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy to the server of a ``redis://`` URL; :attr:`url` is that URL through the proxy."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError("the URL must name a host and a port")
        proxy = cls(parts.hostname, parts.port)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        proxy._url = urlunsplit(parts._replace(netloc=f"{netloc}{proxy.host}:{proxy.port}"))
        return proxy

    @property
    def url(self) -> str:
        """The URL given to :meth:`for_url`, pointing at the proxy (``redis://host:port`` otherwise)."""
        return self._url or f"redis://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections being forwarded now."""
        with self._lock:
            return len(self._forwarded) // 2

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        """Start accepting (in a daemon thread). Returns self."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop: close the listening socket and every connection."""
        with self._lock:
            self._state = "closed"
            doomed = self._take_all()
        _shut(self._listener)
        for s in doomed:
            _shut(s)
        if self._thread.is_alive():
            self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- faults ----------------------------------------------------------------------------------
    def cut(self, *, refuse: bool = False) -> None:
        """Partition: drop every live connection; blackhole new ones (``refuse``: reset them).

        Returns once every live connection is closed.
        """
        with self._lock:
            if self._state == "closed":
                raise RuntimeError("the proxy is closed")
            self._state = "refuse" if refuse else "blackhole"
            doomed = list(self._forwarded)
            self._forwarded.clear()
        for s in doomed:
            _shut(s)

    def heal(self) -> None:
        """Forward new connections again; close those blackholed during the cut (their clients
        reconnect). Returns once they are closed."""
        with self._lock:
            if self._state == "closed":
                raise RuntimeError("the proxy is closed")
            self._state = "open"
            doomed = list(self._blackholed)
            self._blackholed.clear()
        for s in doomed:
            _shut(s)

    # ---- internals -------------------------------------------------------------------------------
    def _take_all(self) -> list[socket.socket]:
        doomed = [*self._forwarded, *self._blackholed]
        self._forwarded.clear()
        self._blackholed.clear()
        return doomed

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self.accepted += 1
                state = self._state
            if state == "open":
                self._forward(client)
            elif state == "blackhole":
                with self._lock:
                    self._blackholed.add(client)
                _spawn(self._swallow, client)
            else:  # refuse (reset at once) or closed
                _reset(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _reset(client)  # the server is down: the client sees what it would see without us
            return
        with self._lock:
            if self._state != "open":  # cut while connecting: this one is dropped too
                live = False
            else:
                live = True
                self._forwarded.update((client, upstream))
        if not live:
            _shut(client)
            _shut(upstream)
            return
        _spawn(self._pump, client, upstream)
        _spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._forwarded.discard(src)
            self._forwarded.discard(dst)
        _shut(src)
        _shut(dst)

    def _swallow(self, client: socket.socket) -> None:
        try:
            while client.recv(_CHUNK):
                pass
        except OSError:
            pass
        with self._lock:
            self._blackholed.discard(client)
        _shut(client)


def _spawn(target: object, *args: socket.socket) -> None:
    threading.Thread(target=target, args=args, name="tcp-proxy-conn", daemon=True).start()  # type: ignore[arg-type]


def _shut(s: socket.socket) -> None:
    """Close ``s``, waking any thread blocked on it (close alone does not wake a blocked recv)."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def _reset(s: socket.socket) -> None:
    """Close with a TCP reset (linger 0): the client gets ECONNRESET, as from a refusing server."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()
