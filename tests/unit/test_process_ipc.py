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


def test_a_record_in_a_childs_inbox_is_taken_by_one_reader_only() -> None:
    from celeriac.worker.process import ipc

    requests, inbox = ipc.inbox_pair()
    try:
        assert ipc.head_seq(inbox) is None and not ipc.claim(inbox, 1)
        requests.send(ipc.record(7, b"run seven"))
        requests.send(ipc.record(8, b"run eight"))
        assert ipc.head_seq(inbox) == 7  # peeked: still there
        assert not ipc.claim(inbox, 8)  # not first: another record is ahead of it
        assert ipc.read_record(inbox.recv(ipc.RECORD_MAX)) == (7, b"run seven")  # the child took 7
        assert ipc.claim(inbox, 8)  # the worker took 8 back: the child never sees it
        assert ipc.head_seq(inbox) is None and not ipc.claim(inbox, 8)
        requests.send(ipc.record(9, b""))  # empty payload: the request follows on the stream
        requests.send(ipc.record(10, b"x"))
        assert ipc.drain(inbox) == [9, 10]
        assert ipc.drain(inbox) == []
    finally:
        requests.close()
        inbox.close()
