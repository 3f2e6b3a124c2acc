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
        self.replies: list[bytes] = []  # what the client said after each INIT body
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
                    reply = reader.readline()
                    if reply == b"":
                        self.dropped_by_client += 1
                    else:
                        self.replies.append(reply.strip())
                except OSError:
                    self.dropped_by_client += 1

    def close(self) -> None:
        self.sock.close()


def test_escaping_paths_are_refused(tmp_path: Path):
    """`..`, relative paths and paths through a mirrored symlink are refused, logged, skipped.

    Each is logged once in one line; the rest of the INIT applies and the
    client goes on to NEXT instead of redoing the INIT in a loop.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    datadir = tmp_path / "backup"
    server = ScriptedServer(
        [
            [
                b"CREATE:/../../../" + bytes(outside).lstrip(b"/") + b"/dotdot",
                b"CREATE:relative/escape",
                b"SYMLINK:/evil\t" + bytes(outside),
                b"CREATE:/evil/through-link",
                b"CREATE:/fine",
            ]
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
        wait_for(lambda: server.replies, 60, message="the client's reply to the INIT")
        assert server.replies == [b"NEXT"] and server.dropped_by_client == 0
        assert (datadir / "fine").is_dir()
        assert list(outside.iterdir()) == []
        assert not (tmp_path / "dotdot").exists()
        assert not Path("/relative").exists()
        assert client.popen.poll() is None, "fs_mirror must survive a hostile server"
        text = client.output()
        assert text.count("refused CREATE") == 3, text  # dotdot, relative, through the link
        assert "Traceback" not in text
    finally:
        client.stop()
        server.close()
