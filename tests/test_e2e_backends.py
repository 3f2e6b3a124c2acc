"""End to end through the other fs_sync backends: a real rsync daemon, and REPORT."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, wait_converged
from tests.helpers import free_port, wait_for


@pytest.fixture
def rsyncd(tmp_path: Path):
    """`rsync --daemon` on loopback exporting the worker's / read-only as module `w`."""
    port = free_port()
    secrets_file = tmp_path / "rsyncd.secrets"
    secrets_file.write_text("backup:rsync-pass\n")
    os.chmod(secrets_file, 0o600)
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(
        "use chroot = no\n"
        f"pid file = {tmp_path / 'rsyncd.pid'}\n"
        "[w]\n"
        "    path = /\n"
        "    read only = yes\n"
        "    uid = root\n    gid = root\n"
        "    auth users = backup\n"
        f"    secrets file = {secrets_file}\n"
    )
    proc = Proc(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--config={conf}",
            "--log-file=/dev/stderr",
        ]
    )
    wait_for(lambda: _listening(port), 10, message="rsync daemon")
    yield port
    proc.kill()


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def rsync_fs_mirror(tmp_path: Path, w: Worker, rsyncd: int, backup: Path, password: str) -> Proc:
    """fs_mirror pulling from ``w`` through the rsync daemon as user backup with ``password``."""
    pw = tmp_path / "pw"
    pw.write_text(f"rsync {password}\n")
    os.chmod(pw, 0o600)
    return Proc(
        [command("fs_mirror"), "-o", "host=127.0.0.1", "-o", f"port={w.port}",
         "-o", "fssync.type=rsync", "-o", f"fssync.port={rsyncd}", "-o", "fssync.user=backup",
         "-o", "fssync.root=/w", f"--password-from={pw}:rsync", f"--datadir={backup}"]
    )  # fmt: skip


def test_rsync_backend_converges(tmp_path: Path, rsyncd: int):
    """INIT then live changes through a real rsync daemon with a password."""
    src = tmp_path / "srv"
    (src / "d").mkdir(parents=True)
    for i in range(50):
        (src / "d" / f"f{i}").write_bytes(os.urandom(300))
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = rsync_fs_mirror(tmp_path, w, rsyncd, backup, "rsync-pass")
    try:
        client.wait_line("init finished", 60)
        wait_converged(src, backup)
        (src / "d" / "f1").write_bytes(b"changed")
        (src / "e").mkdir()
        (src / "e" / "g").write_bytes(b"new")
        wait_converged(src, backup)
    finally:
        client.stop()
        w.stop()


def test_wrong_rsync_password_is_its_own_error_and_never_a_new_init(tmp_path: Path, rsyncd: int):
    """A refused rsync password: a clear error, retried with backoff on the same connection.

    Before, fs_mirror logged 'no connection to mirrord' and redid the full
    INIT every ~2 s; now the INIT in hand waits, and no serial is saved.
    """
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f").write_bytes(b"content")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = rsync_fs_mirror(tmp_path, w, rsyncd, backup, "wrong-pass")
    try:
        client.wait_line("retrying in 2 s", 30)  # the second try of the same batch
        out = client.output()
        assert "password" in out and "backup" in out, out
        assert out.count("full sync") == 1 and "no connection to mirrord" not in out, out
        assert w.proc.count("INIT at serial") == 1
        assert not (backup / "sn").exists() or "," not in (backup / "sn").read_text()
    finally:
        client.stop()
        w.stop()


def test_report_mode_is_a_realtime_tripwire(tmp_path: Path):
    """A chmod or a write to a watched binary is reported within a second; nothing is written."""
    src = tmp_path / "usr-bin"
    src.mkdir()
    binary = src / "sshd"
    binary.write_bytes(b"\x7fELF original")
    os.chmod(binary, 0o755)
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "ids"
    client = Proc(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={w.port}",
            "-o",
            "fssync.type=report",
            "-o",
            "report.format=json",
            f"--datadir={backup}",
        ]
    )
    try:
        client.wait_line("init finished", 60)
        client.wait_line('"event":"baseline","entries":2')  # the INIT is the baseline
        assert client.count("sshd") == 0  # ... and not reported as changes
        before = client.count("ATTRIB")
        t0 = time.monotonic()
        os.chmod(binary, 0o4755)
        client.wait_line("ATTRIB", timeout=5, count=before + 1)
        chmod_latency = time.monotonic() - t0
        writes = client.count("FWRITE")
        t0 = time.monotonic()
        binary.write_bytes(b"\x7fELF trojaned")
        client.wait_line("FWRITE", timeout=5, count=writes + 1)
        write_latency = time.monotonic() - t0
        print(
            f"tripwire latency: chmod {chmod_latency * 1000:.0f} ms, "
            f"write {write_latency * 1000:.0f} ms"
        )
        assert chmod_latency < 1.0 and write_latency < 1.0
        reports = [
            json.loads(line[line.index("{") :])
            for line in client.lines
            if "{" in line and "ATTRIB" in line
        ]
        assert reports and any("mode" in r and "sshd" in json.dumps(r) for r in reports)
        assert not (backup / str(src).lstrip("/")).exists()
    finally:
        client.stop()
        w.stop()
