"""The process pool's framings: length-prefixed messages over a stream socket, and a child's inbox.

The stream is spoken between the worker and each child (answers; requests too large for the inbox),
and between the worker and a lean fork server (its start-up handshake). The inbox (below) carries a
child's requests, one record each. What ``multiprocessing.connection.Connection`` does,
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


_READ_SIZE = 65536


class Channel:
    """Length-prefixed messages over a stream socket. Raises ``EOFError`` when the other end closed
    the socket.

    Reads are buffered: one ``recv`` takes whatever the other end sent (often several messages), and
    a message is sent with one ``sendall``. A message costs one system call each way, not two or four:
    the process pool sends one or two small messages per task.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout_s: float | None) -> None:
        self._sock.settimeout(timeout_s)

    def send_bytes(self, data: bytes) -> None:
        self._sock.sendall(_HEADER.pack(len(data)) + data)

    def _next(self) -> bytes | None:
        """The first whole message in the buffer (taken out of it), or None."""
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(buffer)
        end = _HEADER.size + size
        if len(buffer) < end:
            return None
        data = bytes(buffer[_HEADER.size : end])
        del buffer[:end]
        return data

    def recv_bytes(self) -> bytes:
        """The next message (blocking, under the socket's timeout)."""
        while True:
            data = self._next()
            if data is not None:
                return data
            chunk = self._sock.recv(_READ_SIZE)
            if not chunk:
                raise EOFError("the other process closed its socket")
            self._buffer += chunk

    def recv_available(self) -> tuple[list[bytes], bool]:
        """The messages that can be read without blocking, and whether the other end closed the socket
        (after those messages). One ``recv`` per call when the reader is woken by readiness."""
        eof = False
        while True:
            try:
                chunk = self._sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError, TimeoutError):
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            self._buffer += chunk
            if len(chunk) < _READ_SIZE:
                break  # took all there was (a full read may have left more)
        out = []
        while (data := self._next()) is not None:
            out.append(data)
        return out, eof

    def poll(self) -> bool:
        """True when a message (or EOF) can be read without blocking."""
        if self._next_ready():
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def _next_ready(self) -> bool:
        if len(self._buffer) < _HEADER.size:
            return False
        size: int = _HEADER.unpack_from(self._buffer)[0]
        return len(self._buffer) >= _HEADER.size + size

    def close(self) -> None:
        self._sock.close()


# ---- a child's inbox: its requests, one record each ------------------------------------------------
# The worker sends a child its requests over a SOCK_SEQPACKET pair whose child end it keeps open too
# (the child gets it with SCM_RIGHTS). A record is read whole by one reader: a request sent ahead to a
# busy child is taken either by the child (when it answers its current task: it runs at once, without
# waiting for the worker) or by the worker at its start deadline (it never runs; its delivery goes
# back), never by both. Each record starts with the run's sequence number, so that the worker claims
# only the record it means.

RECORD_MAX = 65536  #: a larger request travels on the stream (:func:`record` with no payload)
_SEQ = struct.Struct("!Q")


def fits(payload: bytes) -> bool:
    """``payload`` travels as one inbox record (else on the stream, announced by an empty record)."""
    return _SEQ.size + len(payload) <= RECORD_MAX


def inbox_pair() -> tuple[socket.socket, socket.socket]:
    """A new inbox: ``(the worker's sending end, the child's receiving end)``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def record(seq: int, payload: bytes) -> bytes:
    """An inbox record: ``seq`` then ``payload`` (empty: the request follows on the stream)."""
    return _SEQ.pack(seq) + payload


def read_record(data: bytes) -> tuple[int, bytes]:
    """``(seq, payload)`` of an inbox record."""
    return _SEQ.unpack_from(data)[0], data[_SEQ.size :]


def head_seq(inbox: socket.socket) -> int | None:
    """The sequence number of the first record waiting in ``inbox`` (read, not taken), or None."""
    try:
        data = inbox.recv(_SEQ.size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    return _SEQ.unpack(data)[0] if len(data) == _SEQ.size else None


def claim(inbox: socket.socket, seq: int) -> bool:
    """Take the record of ``seq`` out of ``inbox`` if it is the first one waiting there (True). False
    when the reader took it already, or when another record is ahead of it (look again later)."""
    if head_seq(inbox) != seq:
        return False
    try:
        data = inbox.recv(RECORD_MAX, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False  # the reader took it between the two calls
    return bool(data)  # nothing else can be behind it: at most one record per run is sent ahead


def drain(inbox: socket.socket) -> list[int]:
    """Take every record still waiting in ``inbox`` (its reader is gone); their sequence numbers."""
    seqs: list[int] = []
    while True:
        try:
            data = inbox.recv(RECORD_MAX, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError, OSError):
            return seqs
        if not data:
            return seqs
        seqs.append(read_record(data)[0])
