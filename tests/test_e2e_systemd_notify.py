"""Both daemons speak systemd's notify protocol (contract 6), as real processes."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, mirror_of
from tests.helpers import datagrams_until, notify_socket

WATCHDOG_USEC = 400_000  # pings every 0.2 s


@pytest.fixture
def manager() -> Iterator[tuple[str, socket.socket]]:
    with notify_socket() as pair:
        yield pair


def env(where: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": where, "WATCHDOG_USEC": str(WATCHDOG_USEC)}


def test_mirrord_ready_watchdog_and_stopping(tmp_path: Path, manager) -> None:
    """READY=1 once it serves, WATCHDOG=1 at half WATCHDOG_USEC, STOPPING=1 on SIGTERM."""
    where, sock = manager
    (tmp_path / "tree").mkdir()
    w = Worker(tmp_path / "data", [tmp_path / "tree"])
    proc = Proc(w.argv, env=env(where))
    try:
        before = datagrams_until(sock, b"READY=1")
        proc.wait_line("boot init finished")  # logged before READY=1, read by a thread
        assert before.count(b"READY=1") == 1
        pings = datagrams_until(sock, b"WATCHDOG=1") + datagrams_until(sock, b"WATCHDOG=1")
        assert b"READY=1" not in pings
        proc.popen.send_signal(signal.SIGTERM)
        assert b"STOPPING=1" in datagrams_until(sock, b"STOPPING=1")
        assert proc.popen.wait(30) == 0
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()


def test_fs_mirror_is_ready_once_in_step(tmp_path: Path, manager) -> None:
    """fs_mirror says READY=1 after its first full sync is applied, not when it starts."""
    where, sock = manager
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"content")
    w = Worker(tmp_path / "data", [tree])
    w.start()
    datadir = tmp_path / "mirror"
    argv = [command("fs_mirror"), "-o", f"host={w.bind}", "-o", f"port={w.port}",
            "-o", "fssync.type=local", f"--datadir={datadir}"]  # fmt: skip
    proc = Proc(argv, env=env(where))
    try:
        got = datagrams_until(sock, b"READY=1")
        assert (mirror_of(datadir, tree) / "f").read_bytes() == b"content"  # applied first
        proc.wait_line("init finished")  # logged before READY=1, read by a thread
        assert got.count(b"READY=1") == 1
        proc.popen.send_signal(signal.SIGTERM)
        assert b"READY=1" not in datagrams_until(sock, b"STOPPING=1")  # once per process
        assert proc.popen.wait(30) == 0
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()
        w.stop()
