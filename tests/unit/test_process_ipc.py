"""The process pool's one framing (``ipc.Channel``) and the lean-or-fork decision's typed reasons."""

from __future__ import annotations

import socket
import threading

import pytest

from celeriac import Celeriac
from celeriac.worker.process.ipc import Channel
from celeriac.worker.process.lean import LeanUnavailable, lean_spec


def test_channel_frames_messages_of_any_size_and_reports_eof() -> None:
    a, b = socket.socketpair()
    left, right = Channel(a), Channel(b)
    try:
        for message in (b"", b"x", b"y" * 1_000_000):
            sender = threading.Thread(target=left.send_bytes, args=(message,))  # larger than a buffer
            sender.start()
            assert right.recv_bytes() == message  # arrives in pieces; recv_exactly reassembles
            sender.join()
        assert not right.poll()
        left.close()
        assert right.poll()  # EOF is readable
        with pytest.raises(EOFError):
            right.recv_bytes()
    finally:
        right.close()


def test_an_app_of_main_cannot_have_a_lean_server_and_that_is_expected() -> None:
    app = Celeriac("lean-main")

    def pid() -> int:
        return 1

    pid.__module__ = "__main__"
    app.task(pid)
    with pytest.raises(LeanUnavailable) as caught:
        lean_spec(app)
    assert caught.value.expected is True
    assert "__main__" in caught.value.reason


def test_channel_reads_every_whole_message_available_at_once_then_eof() -> None:
    a, b = socket.socketpair()
    left, right = Channel(a), Channel(b)
    try:
        assert right.recv_available() == ([], False)  # nothing sent: no wait, no message
        for message in (b"one", b"", b"three"):
            left.send_bytes(message)
        a.sendall(b"\x00\x00")  # half a header: kept for the next read
        assert right.recv_available() == ([b"one", b"", b"three"], False)
        a.sendall(b"\x00\x00\x00\x00\x00\x02hi")
        left.close()
        messages, eof = right.recv_available()
        if not eof:  # read before the close was seen: the next readiness reports it
            assert messages == [b"hi"]
            messages, eof = right.recv_available()
            messages = [b"hi", *messages]
        assert (messages, eof) == ([b"hi"], True)
    finally:
        right.close()
