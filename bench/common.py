"""Shared pieces of the benchmarks: trees, daemons, memory readings.

Benchmarks print their figures; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tree(root: Path, files: int, per_dir: int = 100, size: int = 0) -> tuple[int, int]:
    """``files`` files of ``size`` bytes, ``per_dir`` to a directory, two levels deep.

    Returns (files, directories).  Streams: no list of paths is kept.
    """
    payload = os.urandom(size) if size else b""
    dirs = 0
    made = 0
    while made < files:
        top = root / f"t{dirs // 100:04d}" / f"d{dirs % 100:03d}"
        top.mkdir(parents=True, exist_ok=True)
        dirs += 1
        for i in range(min(per_dir, files - made)):
            with open(top / f"f{i:04d}", "wb") as fh:
                if payload:
                    fh.write(payload)
            made += 1
    return made, dirs


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A command whose output lines are kept, with a wait for a given line."""

    def __init__(self, argv: list[str]) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip())
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, needle: str, timeout: float = 3600) -> float:
        start = time.monotonic()
        with self.cond:
            while not any(needle in line for line in self.lines):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"exited before {needle!r}:\n" + "\n".join(self.lines[-20:]))
                if time.monotonic() - start > timeout:
                    raise TimeoutError(needle)
                self.cond.wait(0.5)
        return time.monotonic() - start

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(120)


def fs_info(datadir: Path, *args: str) -> None:
    subprocess.run([str(BIN / "fs_info"), "-o", f"datadir={datadir}", *args], check=True)


def mirrord(datadir: Path, port: int, *options: str) -> Daemon:
    return Daemon(
        [
            str(BIN / "mirrord"),
            "-o",
            f"datadir={datadir}",
            "-o",
            "bind=127.0.0.1",
            "-o",
            f"port={port}",
            *options,
        ]
    )
