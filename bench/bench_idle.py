"""Memory of an idle pair: mirrord serving a one-file tree and fs_mirror in step with it.

    .venv/bin/python bench/bench_idle.py          # the install of that venv
    /path/to/plain-venv/bin/python bench/bench_idle.py

Starts fs_info, mirrord and fs_mirror (local backend) from the venv that
runs this script, waits until fs_mirror is in step and one change has
arrived in the mirror, then prints each daemon's RSS, peak (VmHWM), and its
anonymous and file-backed parts from /proc. The issue's targets: mirrord
idle <= 40 MiB; the pair's peak <= 80 MiB. With the `tls` extra installed,
Twisted's reactor imports pyOpenSSL and cryptography at start whether TLS
is configured or not (about 13 MiB a process): the script says which it is.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, Daemon, free_port, fs_info, mirrord  # noqa: E402


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def wait_until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the change did not arrive")
        time.sleep(0.05)


def main() -> None:
    top = Path(tempfile.mkdtemp(prefix="bench-idle-", dir="/var/tmp"))
    tree, data, mirror = top / "tree", top / "data", top / "mirror"
    tree.mkdir()
    (tree / "one").write_text("one file\n")
    mirror.mkdir(mode=0o700)
    fs_info(data, "-a", f"t:{tree}")
    port = free_port()
    worker = mirrord(data, port)
    client = None
    try:
        worker.wait_for("boot init finished")
        client = Daemon(
            [
                str(BIN / "fs_mirror"),
                "-o",
                "host=127.0.0.1",
                "-o",
                f"port={port}",
                "-o",
                "fssync.type=local",
                "-o",
                "fssync.root=/",
                f"--datadir={mirror}",
            ]
        )
        client.wait_for("init finished")
        (tree / "two").write_text("a change\n")
        copy = Path(str(mirror) + str(tree)) / "two"
        wait_until(lambda: copy.exists() and copy.read_text() == "a change\n")
        tls = importlib.util.find_spec("OpenSSL") is not None
        print(f"# venv {BIN.parent} ({'with' if tls else 'without'} pyOpenSSL)")
        print(f"{'daemon':10} {'RSS MiB':>8} {'peak MiB':>9} {'anon MiB':>9} {'file MiB':>9}")
        peaks = 0
        for name, daemon in (("mirrord", worker), ("fs_mirror", client)):
            kib = status_kib(daemon.proc.pid)
            peaks += kib["VmHWM"]
            print(
                f"{name:10} {kib['VmRSS'] / 1024:8.1f} {kib['VmHWM'] / 1024:9.1f}"
                f" {kib['RssAnon'] / 1024:9.1f} {kib['RssFile'] / 1024:9.1f}"
            )
        print(f"{'pair':10} {'':8} {peaks / 1024:9.1f}")
    finally:
        if client is not None:
            client.stop()
        worker.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
