"""The rsync backend's acknowledging relay, over real loopback sockets."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from fs_sync.rsyncrelay import MAX_CONNECTIONS, AckingRelay


class _Upstream:
    """A daemon stand-in: for each connection, reads all it is sent while
    sending `reply`, then reports what it read and closes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.accepted = threading.Semaphore(0)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.release()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sender = threading.Thread(target=conn.sendall, args=(self.reply,))
        sender.start()
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        sender.join()
        self.received.append(b"".join(chunks))
        conn.close()

    def close(self) -> None:
        self.listener.close()


def _talk(port: int, payload: bytes) -> bytes:
    """Send `payload` while reading the reply, both at once, as rsync does."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    sender = threading.Thread(target=lambda: (conn.sendall(payload), conn.shutdown(socket.SHUT_WR)))
    sender.start()
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    sender.join()
    conn.close()
    return b"".join(chunks)


def test_both_directions_flow_at_once_without_either_blocking_the_other():
    # Each way far more than the loopback socket buffers hold: a relay that
    # copied one way at a time would deadlock here.
    reply, payload = os.urandom(24 << 20), os.urandom(24 << 20)
    upstream = _Upstream(reply)
    relay = AckingRelay("127.0.0.1", upstream.port, timeout=5)
    try:
        relay.dial()
        assert _talk(relay.port, payload) == reply
        assert upstream.received == [payload]
    finally:
        relay.close()
        upstream.close()


def test_connections_after_the_dialled_one_dial_their_own():
    upstream = _Upstream(b"greeting\n")
    relay = AckingRelay("127.0.0.1", upstream.port, timeout=5)
    try:
        relay.dial()
        assert _talk(relay.port, b"first") == b"greeting\n"
        assert _talk(relay.port, b"second") == b"greeting\n"
        assert sorted(upstream.received) == [b"first", b"second"]
    finally:
        relay.close()
        upstream.close()


def test_dial_says_why_the_daemon_cannot_be_reached():
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    relay = AckingRelay("127.0.0.1", port, timeout=5)
    try:
        with pytest.raises(ConnectionRefusedError):
            relay.dial()
    finally:
        relay.close()


def test_connections_beyond_the_limit_are_closed_not_queued_forever():
    upstream = _Upstream(b"")
    relay = AckingRelay("127.0.0.1", upstream.port, timeout=5)
    held = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        for _ in held:  # all of them relayed, none closed
            assert upstream.accepted.acquire(timeout=10)
        extra = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        assert extra.recv(1) == b""  # closed at once
        extra.close()
    finally:
        for conn in held:
            conn.close()
        relay.close()
        upstream.close()


def test_after_close_nothing_is_accepted():
    upstream = _Upstream(b"")
    relay = AckingRelay("127.0.0.1", upstream.port, timeout=5)
    port = relay.port
    relay.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    upstream.close()
