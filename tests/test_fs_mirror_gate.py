"""The batch gate waits, without blocking the reactor, while another process holds the lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.internet.task import Clock

from fs_mirror.gate import POLL, BatchLock, FileGate, batch_lock_path

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def hold(datadir: Path) -> subprocess.Popen[str]:
    """Another process (as fs_mirror --rotate would be) holding the batch lock."""
    BatchLock(str(datadir)).close()  # makes the directory and the file
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, batch_lock_path(str(datadir))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_gate_polls_until_the_other_process_lets_go(tmp_path: Path):
    """acquire() fires only after the holder releases; the wait is polled on the clock."""
    proc = hold(tmp_path)
    clock = Clock()
    gate = FileGate(BatchLock(str(tmp_path)), clock)
    fired: list[object] = []
    try:
        gate.acquire().addCallback(fired.append)
        clock.advance(POLL)
        clock.advance(POLL)
        assert fired == []
    finally:
        proc.communicate("\n", timeout=10)
    clock.advance(POLL)
    assert fired == [gate]
    gate.release()
    assert not gate.locked


def test_gate_without_contention_is_immediate(tmp_path: Path):
    """No rotation running: acquire fires at once and release frees the file for others."""
    gate = FileGate(BatchLock(str(tmp_path)), Clock())
    fired: list[object] = []
    gate.acquire().addCallback(fired.append)
    assert fired == [gate]
    gate.release()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
            " fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
            batch_lock_path(str(tmp_path)),
        ],
        timeout=10,
    )
    assert probe.returncode == 0
