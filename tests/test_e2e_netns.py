"""Two hosts made of network namespaces: a worker and a backup host joined by veth.

mirrord serves from the worker namespace with its embedded FTP service;
fs_mirror in the backup namespace fetches over the veth link only.  The
addresses exist only inside these namespaces, which the test creates and
removes itself.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, wait_converged

WORKER_ADDR = "10.213.7.1"
BACKUP_ADDR = "10.213.7.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    tag = secrets.token_hex(3)
    worker_ns, backup_ns = f"mfs-w-{tag}", f"mfs-b-{tag}"
    try:
        ip("netns", "add", worker_ns)
        ip("netns", "add", backup_ns)
        ip("link", "add", f"vw{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        ip("link", "set", f"vw{tag}", "netns", worker_ns)
        ip("link", "set", f"vb{tag}", "netns", backup_ns)
        for ns, dev, addr in (
            (worker_ns, f"vw{tag}", WORKER_ADDR),
            (backup_ns, f"vb{tag}", BACKUP_ADDR),
        ):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield worker_ns, backup_ns
    finally:
        for ns in (worker_ns, backup_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def test_mirror_across_two_hosts_over_embedded_ftp(hosts, tmp_path: Path):
    """INIT and live changes cross the veth link through the embedded read-only FTP."""
    worker_ns, backup_ns = hosts
    src = tmp_path / "www"
    (src / "html").mkdir(parents=True)
    (src / "html" / "index.php").write_bytes(b"<?php echo 1;\n")
    os.chmod(src / "html" / "index.php", 0o640)
    secret_file = tmp_path / "secrets"
    secret_file.write_text("ftp s3cret-pass\n")
    os.chmod(secret_file, 0o600)
    ftp_port = 2121
    w = Worker(
        tmp_path / "mirrord",
        [src],
        bind=WORKER_ADDR,
        port=2123,
        prefix=["ip", "netns", "exec", worker_ns],
        options=[
            "-o",
            f"ftp.port={ftp_port}",
            "-o",
            f"ftp.bind={WORKER_ADDR}",
            "-o",
            "ftp.user=mirror",
            "-o",
            f"ftp.password-from={secret_file}:ftp",
        ],
    )
    w.start()
    backup = tmp_path / "backup"
    client = Proc(
        [
            command("fs_mirror"),
            "-o",
            f"host={WORKER_ADDR}",
            "-o",
            "port=2123",
            "-o",
            "fssync.type=ftp",
            "-o",
            f"fssync.port={ftp_port}",
            "-o",
            "fssync.user=mirror",
            f"--password-from={secret_file}:ftp",
            f"--datadir={backup}",
        ],
        prefix=["ip", "netns", "exec", backup_ns],
    )
    try:
        client.wait_line("init finished", 60)
        wait_converged(src, backup)
        (src / "html" / "new.html").write_bytes(b"<p>new</p>" * 1000)
        os.chmod(src / "html" / "index.php", 0o600)
        wait_converged(src, backup)
    finally:
        client.stop()
        w.stop()
