"""fs_mirror INIT throughput per backend next to plain rsync, and propagation latency.

    .venv/bin/python bench/bench_mirror.py [FILES] [SIZE] [SAMPLES]

Builds FILES files of SIZE bytes (default 100000 x 1 KiB), runs one mirrord
(with its embedded FTP service) and, for each backend (local, rsync against
an `rsync --daemon` on loopback, ftp), a fresh fs_mirror into an empty
datadir, timing the full INIT until 'init finished'.  A plain
`rsync -a` of the same tree through the same daemon is the yardstick.
Then, with the local backend, it writes SAMPLES files one at a time and
measures from the write to the complete file in the mirror (p50, p99); with
SAMPLES below 2 that part is skipped.  BENCH_BACKENDS=rsync,ftp runs only
the named backends.  The cpu columns (CPU seconds of fs_mirror and of
mirrord during the INIT) say which side is the bottleneck.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BIN,
    Daemon,
    cpu_seconds,
    free_port,
    fs_info,
    make_tree,
    mirrord,
    peak_rss_kib,
)


def start_rsyncd(top: Path) -> tuple[Daemon, int]:
    port = free_port()
    conf = top / "rsyncd.conf"
    conf.write_text(
        f"use chroot = no\npid file = {top / 'rsyncd.pid'}\n"
        "[w]\n  path = /\n  read only = yes\n  uid = root\n  gid = root\n"
    )
    daemon = Daemon(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--config={conf}",
        ]
    )
    for _ in range(500):
        if (
            subprocess.run(["rsync", f"rsync://127.0.0.1:{port}/"], capture_output=True).returncode
            == 0
        ):
            break
    return daemon, port


def fs_mirror(port: int, datadir: Path, *opts: str) -> Daemon:
    return Daemon(
        [
            str(BIN / "fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={port}",
            f"--datadir={datadir}",
            *opts,
        ]
    )


def main(files: int, size: int, samples: int) -> None:
    top = Path(tempfile.mkdtemp(prefix="bench-mirror-", dir="/var/tmp"))
    try:
        tree = top / "tree"
        made, dirs = make_tree(tree, files, size=size)
        total_mb = made * size / 1e6
        print(f"# {made} files of {size} B in {dirs} dirs ({total_mb:.0f} MB)", flush=True)
        secrets = top / "secrets"
        secrets.write_text("ftp bench-pass\n")
        secrets.chmod(0o600)
        fs_info(top / "data", "-a", f"t:{tree}")
        port, ftp_port = free_port(), free_port()
        worker = mirrord(
            top / "data",
            port,
            "-o",
            f"ftp.port={ftp_port}",
            "-o",
            f"ftp.password-from={secrets}:ftp",
        )
        worker.wait_for("boot init finished")
        rsyncd, rport = start_rsyncd(top)
        backends = {
            "local": ["-o", "fssync.type=local"],
            "rsync": [
                "-o",
                "fssync.type=rsync",
                "-o",
                f"fssync.port={rport}",
                "-o",
                "fssync.root=/w",
            ],
            "ftp": [
                "-o",
                "fssync.type=ftp",
                "-o",
                f"fssync.port={ftp_port}",
                "-o",
                "fssync.user=mirror",
                f"--password-from={secrets}:ftp",
            ],
        }
        chosen = os.environ.get("BENCH_BACKENDS")
        if chosen:
            backends = {k: v for k, v in backends.items() if k in chosen.split(",")}
        print(
            f"{'method':>12} {'seconds':>8} {'files/s':>9} {'MB/s':>7}"
            f" {'cpu client':>10} {'cpu mirrord':>11} {'MiB client':>10} {'MiB mirrord':>11}",
            flush=True,
        )
        t0 = time.monotonic()
        subprocess.run(
            ["rsync", "-a", f"rsync://127.0.0.1:{rport}/w{tree}/", str(top / "plain-rsync")],
            check=True,
        )
        took = time.monotonic() - t0
        print(
            f"{'rsync -a':>12} {took:>8.1f} {made / took:>9.0f} {total_mb / took:>7.1f}", flush=True
        )
        shutil.rmtree(top / "plain-rsync")
        for name, opts in backends.items():
            os.sync()  # start each run with no dirty pages of the previous one
            server_cpu = cpu_seconds(worker.proc.pid)
            client = fs_mirror(port, top / f"m-{name}", *opts)
            took = client.wait_for("init finished")
            client_cpu = cpu_seconds(client.proc.pid)
            server_cpu = cpu_seconds(worker.proc.pid) - server_cpu
            client_mib = peak_rss_kib(client.proc.pid) / 1024
            server_mib = peak_rss_kib(worker.proc.pid) / 1024  # its peak so far: boot included
            client.stop()
            print(
                f"{name:>12} {took:>8.1f} {made / took:>9.0f} {total_mb / took:>7.1f}"
                f" {client_cpu:>10.1f} {server_cpu:>11.1f} {client_mib:>10.1f}"
                f" {server_mib:>11.1f}",
                flush=True,
            )
            # Kept until the end: removing 100k files right before the next
            # run makes ext4 skip recently freed inodes on every create there.
        if samples < 2:
            rsyncd.stop()
            worker.stop()
            return
        client = fs_mirror(port, top / "m-latency", "-o", "fssync.type=local")
        client.wait_for("init finished")
        mirror = top / "m-latency" / str(tree).lstrip("/")
        delays = []
        for i in range(samples):
            content = os.urandom(size or 1)
            target = mirror / "t0000" / "d000" / f"lat{i}"
            t0 = time.monotonic()
            (tree / "t0000" / "d000" / f"lat{i}").write_bytes(content)
            while True:
                try:
                    if target.read_bytes() == content:
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.0005)
            delays.append(time.monotonic() - t0)
        client.stop()
        q = statistics.quantiles(delays, n=100)
        print(
            f"latency write->mirror over {samples}: p50 {q[49] * 1000:.1f} ms, "
            f"p99 {q[98] * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms",
            flush=True,
        )
        rsyncd.stop()
        worker.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(
        int(a[0]) if a else 100_000,
        int(a[1]) if len(a) > 1 else 1024,
        int(a[2]) if len(a) > 2 else 200,
    )
