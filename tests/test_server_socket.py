"""The protocol server on a real TCP socket, over a real Berkeley DB store, in a subprocess.

Run as a module (``python -m tests.test_server_socket HOME PORTFILE [CERT KEY]``)
this file is the server: a real reactor, store and journal, ``listen`` on 127.0.0.1:0, and stdin
lines ``create PATH`` committing records. The tests talk to it as telnet does.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from mirrord.store import Entry, Store
from mirrord.values import Put
from protocol.records import Action, Meta, Record
from tests.daemons import LineClient
from tests.helpers import wait_for
from tests.test_server import create, real_journal

ROOT = Path(__file__).resolve().parent.parent


def serve(home: str, portfile: str, cert: str | None = None, key: str | None = None) -> None:
    """The subprocess: serve ``home`` until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from mirrord.clients import MirrorServerFactory
    from mirrord.listeners import listen

    store = Store(home)
    journal = real_journal(store, reactor)
    factory = MirrorServerFactory(store, journal, batch=2, timeout=30.0, reactor=reactor)

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:  # noqa: N802
            verb, _, path = line.partition(b" ")
            if verb == b"create":
                create(journal, path)

        def connectionLost(self, reason: object = None) -> None:  # noqa: N802
            reactor.stop()

    def ready(port) -> None:
        with open(portfile + ".tmp", "w") as f:
            f.write(str(port.getHost().port))
        os.rename(portfile + ".tmp", portfile)

    listen(factory, reactor, 0, "127.0.0.1", cert, key).addCallback(ready)
    stdio.StandardIO(Commands())
    reactor.run()
    store.close()


class Server:
    """The subprocess above, with its port and a way to commit records in it."""

    def __init__(self, tmp_path: Path, tls: tuple[str, str] | None = None) -> None:
        self.portfile = tmp_path / "port"
        argv = [sys.executable, "-m", "tests.test_server_socket", str(tmp_path / "db")]
        argv += [str(self.portfile), *(tls or ())]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE)
        wait_for(lambda: self.portfile.exists() or self.proc.poll() is not None, 20, message="port")
        assert self.proc.poll() is None, "server exited early"
        self.port = int(self.portfile.read_text())

    def create(self, path: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"create " + path + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def make_store(home: Path, count: int) -> tuple[str, list[bytes]]:
    """A real store with a small tree and two log records; returns session and paths."""
    store = Store(str(home))
    d = Entry(b"d", 0o755, 0, 0, 0, 5_000_000_000, 5_000_000_000)
    f = Entry(b"f", 0o640, 0, 0, 11, 5_000_000_000, 5_000_000_000)
    ops = [Put(b"/w", d), Put(b"/w/sub", d), Put(b"/w/sub.txt", f)]
    ops += [Put(b"/w/sub/f%04d" % i, f) for i in range(count)]
    store.load(ops)
    store.commit([Record(Action.CREATE, b"/w/one")], [Put(b"/w/one", d)])
    store.commit([Record(Action.CREATE, b"/w/two")], [Put(b"/w/two", d)])
    session = store.session
    paths = [p for p, _ in store.walk()]
    store.close()
    return session, paths


@pytest.fixture
def server(tmp_path):
    session, paths = make_store(tmp_path / "db", 600)
    srv = Server(tmp_path)
    srv.session, srv.paths = session, paths
    yield srv
    assert srv.stop() == 0


def test_telnet_style_client_init_next_and_resume(server):
    """A bare-LF client runs START, INIT (whole tree), NEXT (parked, then woken) and SN resume."""
    c = LineClient("127.0.0.1", server.port)
    c.send(b"START")
    assert c.recv_line() == b"OK"
    c.send(b"INIT")
    lines = c.lines_until(b"EOF")
    assert lines[:2] == [b"SESSION:" + server.session.encode(), b"SERIAL:2"]
    records = [Record.decode(line) for line in lines[2:-1]]
    assert [r.path for r in records] == server.paths
    assert records[0] == Record(Action.CREATE, b"/w", meta=Meta(0o755, 0, 0, None, 5 * 10**9))
    assert records[1].action is Action.CREATE and records[1].path == b"/w/one"
    assert Record.decode(lines[-2]).path == b"/w/two"
    c.send(b"NEXT")
    with pytest.raises(TimeoutError):
        c.recv_line(timeout=0.3)  # parked: nothing to send yet
    server.create(b"/w/three")
    assert c.lines_until(b"EOF") == [b"SERIAL:3", b"CREATE:/w/three", b"EOF"]
    c.close()

    again = LineClient("127.0.0.1", server.port)
    again.send(b"START", end=b"\r\n")
    assert again.recv_line() == b"OK"
    again.send(b"SN:%s,1" % server.session.encode())
    assert again.recv_line() == b"OK"
    again.send(b"NEXT")  # batch=2 in the server
    assert again.lines_until(b"EOF") == [b"SERIAL:3", b"CREATE:/w/two", b"CREATE:/w/three", b"EOF"]
    again.close()


def test_hostile_client_does_not_disturb_another(server):
    """A client sending an over-long line of junk is closed; a parked client is unaffected."""
    good = LineClient("127.0.0.1", server.port)
    good.send(b"START")
    good.send(b"SN:%s,2" % server.session.encode())
    assert [good.recv_line(), good.recv_line()] == [b"OK", b"OK"]
    good.send(b"NEXT")

    bad = LineClient("127.0.0.1", server.port)
    bad.sock.sendall(b"\x00" + b"\xff" * 65536)  # the cap is crossed by the last byte sent
    assert bad.recv_line() == b"INVALID COMMAND"
    assert bad.closed()
    rude = LineClient("127.0.0.1", server.port)
    rude.close()  # connect and vanish

    server.create(b"/w/x")
    assert good.lines_until(b"EOF") == [b"SERIAL:3", b"CREATE:/w/x", b"EOF"]
    good.close()


def test_tls_only_when_cert_and_key_given(tmp_path):
    """With a certificate and key the port speaks TLS only, and the protocol runs inside it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    session, _ = make_store(tmp_path / "db", 3)
    srv = Server(tmp_path, tls=(str(cert), str(key)))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"START\nINIT\n")
            data = b""
            while not data.endswith(b"EOF\r\n"):
                chunk = tls.recv(65536)
                assert chunk, data
                data += chunk
        assert data.startswith(b"OK\r\nSESSION:" + session.encode() + b"\r\nSERIAL:2\r\n")

        plain = LineClient("127.0.0.1", srv.port)
        plain.send(b"START")
        try:
            reply = plain.recv_line(timeout=5)
        except (ConnectionResetError, TimeoutError):
            reply = None
        assert reply != b"OK"
        plain.close()
    finally:
        assert srv.stop() == 0


if __name__ == "__main__":
    serve(*sys.argv[1:])
