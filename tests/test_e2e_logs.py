"""The daemons' logs as operators meet them: the journal's priorities, progress as STATUS=."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, mirror_of
from tests.helpers import datagrams_until, notify_socket, wait_for


@pytest.fixture
def manager() -> Iterator[tuple[str, socket.socket]]:
    with notify_socket() as pair:
        yield pair


def test_mirrord_prefixes_priorities_when_stderr_is_the_journal(tmp_path: Path) -> None:
    """With JOURNAL_STREAM naming its stderr's device:inode, every line starts with its
    syslog priority: <6> for the ready line, <4> for a refused client (max-clients)."""
    (tmp_path / "tree").mkdir()
    w = Worker(tmp_path / "data", [tmp_path / "tree"], options=["-o", "max-clients=1"])
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = subprocess.Popen(w.argv, stdout=f, stderr=f, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: "boot init finished" in err.read_text(), 60, message="ready line")
        first = w.client()
        first.send(b"START")
        assert first.recv_line() == b"OK"
        second = w.client()
        assert second.recv_line() == b"BUSY"
        wait_for(lambda: "refused" in err.read_text(), 30, message="refused client logged")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        first.close()
        second.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.read_text().splitlines()
    assert lines and all(line.startswith(("<6>[mirrord] ", "<4>[mirrord] ")) for line in lines)
    assert any(line.startswith("<6>[mirrord] boot init finished") for line in lines)
    assert any(line.startswith("<4>[mirrord] warning: client ") for line in lines)


def test_plain_lines_when_journal_stream_names_another_file(tmp_path: Path) -> None:
    """An inherited JOURNAL_STREAM that is not our stderr changes nothing."""
    (tmp_path / "tree").mkdir()
    w = Worker(tmp_path / "data", [tmp_path / "tree"])
    other = os.stat(tmp_path / "tree")
    proc = Proc(w.argv, env={"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"})
    try:
        proc.wait_line("boot init finished", 60)
    finally:
        assert proc.stop() == 0
    assert not any(line.startswith("<") for line in proc.lines)
    assert any("[mirrord] boot init finished" in line for line in proc.lines)


def test_status_lines_carry_progress_of_boot_and_init(tmp_path: Path, manager) -> None:
    """Contract 6: STATUS= with progress during mirrord's boot scan (before READY=1) and
    during fs_mirror's INIT (before its READY=1), then what each does once in step.
    ``progress.interval`` is made short so a small tree is a long boot."""
    where, sock = manager
    tree = tmp_path / "tree"
    for d in range(10):
        (tree / f"d{d}").mkdir(parents=True)
        for n in range(400):
            (tree / f"d{d}" / f"f{n}").write_bytes(b"x")
    fast = ["-o", "progress.interval=0.01"]
    w = Worker(tmp_path / "data", [tree], options=fast)
    env = {"NOTIFY_SOCKET": where}
    mirrord = Proc(w.argv, env=env)
    fs_mirror = None
    try:
        boot = datagrams_until(sock, b"READY=1")
        progress = [d for d in boot if d.startswith(b"STATUS=boot: ")]
        assert progress, boot
        assert all(b" entries, " in d and d.endswith(b"/s") for d in progress)
        assert datagrams_until(sock, b"STATUS=")[-1].startswith(b"STATUS=serving: ")
        mirrord.wait_line("boot init finished", 30)

        datadir = tmp_path / "mirror"
        fs_mirror = Proc([command("fs_mirror"), "-o", f"host={w.bind}", "-o", f"port={w.port}",
                          "-o", "fssync.type=local", f"--datadir={datadir}", *fast],
                         env=env)  # fmt: skip
        init = datagrams_until(sock, b"READY=1")
        assert any(d.startswith(b"STATUS=INIT: ") and b" records, " in d for d in init), init
        after = datagrams_until(sock, b"STATUS=in step")
        assert after[-1].startswith(b"STATUS=in step with mirrord from serial ")
        assert (mirror_of(datadir, tree) / "d9" / "f399").exists()
        fs_mirror.wait_line("init finished", 30)
        assert "INIT: " in fs_mirror.output()  # stderr is no terminal: progress lines
        mirrord.wait_line("INIT sent", 30)
        assert "4011 entries in " in mirrord.output()  # the root, 10 dirs, 4000 files
    finally:
        if fs_mirror is not None:
            assert fs_mirror.stop() == 0
        assert mirrord.stop() == 0


def test_a_log_file_that_cannot_be_opened_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    """log.file in a directory that does not exist: a configuration error naming log.file."""
    bad = tmp_path / "no" / "such" / "fs_mirror.log"
    done = subprocess.run(
        [command("fs_mirror"), "-o", "host=127.0.0.1", "-o", "fssync.type=local",
         f"--datadir={tmp_path / 'mirror'}", "-o", f"log.file={bad}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "log.file" in done.stderr and str(bad) in done.stderr
