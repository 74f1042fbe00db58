"""The one framing of the process pool: length-prefixed messages over a stream socket.

Spoken between the worker and each child (task requests and answers), and between the worker and a
lean fork server (its start-up handshake). What ``multiprocessing.connection.Connection`` does,
without importing ``multiprocessing`` (4.5 MiB resident in every child).
"""

from __future__ import annotations

import select
import socket
import struct

_HEADER = struct.Struct("!Q")  # the length of the message that follows


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes.

    Raises:
        ConnectionResetError: the other end closed the socket first.
    """
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the other process closed its socket")
        data += chunk
    return data


class Channel:
    """Length-prefixed messages over a stream socket. Raises ``EOFError`` when the other end closed
    the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout_s: float | None) -> None:
        self._sock.settimeout(timeout_s)

    def send_bytes(self, data: bytes) -> None:
        self._sock.sendall(_HEADER.pack(len(data)))
        self._sock.sendall(data)

    def recv_bytes(self) -> bytes:
        try:
            (size,) = _HEADER.unpack(recv_exactly(self._sock, _HEADER.size))
            return recv_exactly(self._sock, size) if size else b""
        except ConnectionResetError as exc:
            raise EOFError(str(exc)) from None

    def poll(self) -> bool:
        """True when a message (or EOF) can be read without blocking."""
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self._sock.close()
