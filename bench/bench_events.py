"""Events per second the monitor sustains, seen by a protocol client.

    .venv/bin/python bench/bench_events.py [FILES]

A writer creates FILES small files (open, write, close) as fast as it can in
20 directories; a raw protocol client NEXTs until it has seen an FWRITE for
every one.  Prints the writer's rate and the end-to-end rate (first write to
last record received), i.e. what mirrord turns into durable, served records.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, fs_info, mirrord  # noqa: E402


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


def main(files: int) -> None:
    top = Path(tempfile.mkdtemp(prefix="bench-events-", dir="/var/tmp"))
    try:
        tree = top / "tree"
        for d in range(20):
            (tree / f"d{d}").mkdir(parents=True)
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
            for i in range(files):
                with open(tree / f"d{i % 20}" / f"f{i}", "wb") as fh:
                    fh.write(b"x")
            writer_time[0] = time.monotonic() - t0

        start = time.monotonic()
        threading.Thread(target=write).start()
        seen = 0
        batches = 0
        while seen < files:
            client.send(b"NEXT")
            batch = client.until_eof()
            batches += 1
            seen += sum(1 for line in batch if line.startswith(b"FWRITE:"))
        took = time.monotonic() - start
        print(
            f"files {files}: writer {files / writer_time[0]:.0f} files/s; "
            f"served {files / took:.0f} records/s end to end "
            f"({took:.2f}s, {batches} NEXT batches)"
        )
        daemon.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
