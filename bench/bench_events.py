"""Events per second the monitor sustains, seen by a protocol client.

    .venv/bin/python bench/bench_events.py [FILES] [create|touch]

`create`: a writer creates FILES empty files with `touch` (1000 names per
call) in 20 directories: this machine's file creation rate is usually the
limit.  `touch`: the FILES files exist before mirrord boots and the writer
touches each once (1000 names per call, about 100k files/s here), which
measures mirrord rather than the file system.  A raw protocol client NEXTs
until it has seen an FWRITE for every file.  Prints the writer's rate and
the end-to-end rate (first change to last record received): what mirrord
turns into durable, served records.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, free_port, fs_info, mirrord, peak_rss_kib  # noqa: E402


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def until_eof(self) -> list[bytes]:
        out = []
        for raw in self.file:
            line = raw.rstrip(b"\r\n")
            if line == b"EOF":
                return out
            out.append(line)
        raise EOFError


def touch_all(names: list[str]) -> None:
    for first in range(0, len(names), 1000):
        subprocess.run(["touch", *names[first : first + 1000]], check=True)


def main(files: int, mode: str) -> None:
    top = Path(tempfile.mkdtemp(prefix="bench-events-", dir="/var/tmp"))
    try:
        tree = top / "tree"
        for d in range(20):
            (tree / f"d{d}").mkdir(parents=True)
        names = [str(tree / f"d{i % 20}" / f"f{i}") for i in range(files)]
        if mode == "touch":
            touch_all(names)
        fs_info(top / "data", "-a", f"t:{tree}")
        port = free_port()
        daemon = mirrord(top / "data", port)
        daemon.wait_for("boot init finished")
        client = Client(port)
        client.send(b"START")
        client.file.readline()
        client.send(b"INIT")
        client.until_eof()
        writer_time = [0.0]

        def write() -> None:
            t0 = time.monotonic()
            touch_all(names)
            writer_time[0] = time.monotonic() - t0

        start, cpu0 = time.monotonic(), cpu_seconds(daemon.proc.pid)
        writer = threading.Thread(target=write)
        writer.start()
        seen: set[bytes] = set()
        batches = records = 0
        while len(seen) < files:
            client.send(b"NEXT")
            batch = client.until_eof()
            batches += 1
            records += len(batch) - 1
            seen.update(line.split(b"\t")[0] for line in batch if line.startswith(b"FWRITE:"))
        took, cpu = time.monotonic() - start, cpu_seconds(daemon.proc.pid) - cpu0
        writer.join()
        print(
            f"{mode} {files} files: writer {files / writer_time[0]:.0f} files/s; "
            f"served {files / took:.0f} files/s end to end ({records} records, "
            f"{took:.2f}s, {batches} NEXT batches); mirrord {cpu:.2f} CPU s "
            f"({files / cpu:.0f} changes per CPU s); peak RSS "
            f"{peak_rss_kib(daemon.proc.pid) / 1024:.0f} MiB; queue overflows: "
            f"{sum('overflow' in line for line in daemon.lines)}"
        )
        daemon.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
        sys.argv[2] if len(sys.argv) > 2 else "touch",
    )
