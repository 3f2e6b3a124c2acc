"""What one client may cost a real mirrord (contract 2.3), probed over raw sockets."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemons import LineClient, Worker, assert_clean_output
from tests.helpers import wait_for


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(options: list[str] = ()) -> Worker:
        tree = tmp_path / "tree"
        tree.mkdir(exist_ok=True)
        (tree / "f").write_bytes(b"x")
        w = Worker(tmp_path / "data", [tree], options=list(options))
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        if w.proc is not None:
            assert w.stop() == 0
            assert_clean_output(w.proc)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def still_serves(w: Worker) -> bool:
    c = LineClient(w.bind, w.port)
    try:
        c.send(b"START")
        return c.recv_line() == b"OK"
    finally:
        c.close()


def test_a_client_that_never_reads_does_not_grow_mirrord(make_worker) -> None:
    """START, then SN lines as fast as the socket takes them, never reading the
    replies: mirrord stops reading that client once its unsent output passes
    the limit, so its memory stays flat while the sender blocks (issue 9: 79 ->
    883 MiB for 160 MiB sent)."""
    w = make_worker()
    pid = w.proc.popen.pid
    before = rss_kib(pid)
    sock = socket.create_connection((w.bind, w.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies pile up at mirrord
    sock.sendall(b"START\n")
    chunk = b"SN:00000000000000000000000000000000,1\n" * 4096  # 155 KiB of SN lines
    sent, pending, blocked_since = 0, memoryview(chunk), None
    sock.setblocking(False)
    deadline = time.monotonic() + 60
    while sent < 160 << 20 and time.monotonic() < deadline:
        try:
            n = sock.send(pending)  # whole lines only reach mirrord: keep the rest
            sent += n
            pending = pending[n:] or memoryview(chunk)
            blocked_since = None
        except BlockingIOError:
            now = time.monotonic()
            blocked_since = blocked_since or now
            if now - blocked_since > 2.0:  # mirrord has stopped reading us: what we wanted
                break
            select.select([], [sock], [], 0.1)  # until it takes more, or 2 s pass
    grown = rss_kib(pid) - before
    sock.close()
    assert grown < 48 * 1024, f"mirrord grew {grown} KiB after {sent >> 20} MiB sent"
    assert sent < 160 << 20, "mirrord read 160 MiB without ever pushing back"
    assert still_serves(w)


def test_a_connection_that_does_not_start_is_closed_after_10_seconds(make_worker) -> None:
    """A client that connects and says nothing (or only half a line) is closed."""
    w = make_worker()
    c = LineClient(w.bind, w.port)
    started = time.monotonic()
    c.sock.sendall(b"STA")  # half a START, never finished
    assert c.closed(timeout=20)
    took = time.monotonic() - started
    assert 9.0 <= took <= 15.0, took
    assert still_serves(w)


def test_connections_past_max_clients_get_busy(make_worker) -> None:
    """With max-clients=2 the third connection gets BUSY and a close; the two work on."""
    w = make_worker(["-o", "max-clients=2"])
    first, second = LineClient(w.bind, w.port), LineClient(w.bind, w.port)
    for c in (first, second):
        c.send(b"START")
        assert c.recv_line() == b"OK"
    third = LineClient(w.bind, w.port)
    assert third.recv_line() == b"BUSY"
    assert third.closed()
    first.send(b"INIT")
    assert first.recv_line().startswith(b"SESSION:")
    first.close()
    wait_for(lambda: still_serves(w), message="a place freed by a closed client")
    second.close()
