"""fs_mirror facing a hostile server never writes outside its datadir."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.daemons import Proc, command
from tests.helpers import wait_for


class ScriptedServer:
    """A fake mirrord: each accepted connection gets the next scripted INIT body."""

    def __init__(self, bodies: list[list[bytes]]) -> None:
        self.bodies = bodies
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self.dropped_by_client = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while self.served < len(self.bodies):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(20)
                reader = conn.makefile("rb")
                if reader.readline().strip() != b"START":
                    continue
                conn.sendall(b"OK\r\n")
                reader.readline()  # INIT or SN: we answer INIT either way
                body = self.bodies[self.served]
                self.served += 1
                lines = [b"SESSION:" + b"ab" * 16, b"SERIAL:7", *body, b"EOF"]
                try:
                    conn.sendall(b"".join(line + b"\r\n" for line in lines))
                    if reader.readline() == b"":
                        self.dropped_by_client += 1
                except OSError:
                    self.dropped_by_client += 1

    def close(self) -> None:
        self.sock.close()


def test_escaping_paths_are_refused(tmp_path: Path):
    """`..`, relative paths and paths through a mirrored symlink are refused and logged."""
    outside = tmp_path / "outside"
    outside.mkdir()
    datadir = tmp_path / "backup"
    server = ScriptedServer(
        [
            [b"CREATE:/../../../" + bytes(outside).lstrip(b"/") + b"/dotdot"],
            [b"CREATE:relative/escape"],
            [b"SYMLINK:/evil\t" + bytes(outside), b"CREATE:/evil/through-link"],
        ]
    )
    client = Proc(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={server.port}",
            "-o",
            "fssync.type=local",
            "-o",
            "reconnect.max=1",
            f"--datadir={datadir}",
        ]
    )
    try:
        wait_for(lambda: server.dropped_by_client >= 3, 60, message="client to drop 3 times")
        assert list(outside.iterdir()) == []
        assert not (tmp_path / "dotdot").exists()
        assert not Path("/relative").exists()
        assert client.popen.poll() is None, "fs_mirror must survive a hostile server"
        text = client.output().lower()
        assert "refus" in text or "hostile" in text
    finally:
        client.stop()
        server.close()
