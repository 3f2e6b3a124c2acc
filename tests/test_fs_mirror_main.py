"""The real ``fs_mirror`` command against a small scripted mirrord on loopback.

The server speaks protocol version 1 from a thread: INIT sends a fixed
snapshot, SN is accepted for its own session, each NEXT gets the next queued
batch (or waits for one).  fs_mirror runs as a subprocess, as in production.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from fs_mirror.service import DailyRotation, next_run
from protocol.messages import client_proof, server_proof
from tests.daemons import Proc, command
from tests.helpers import wait_for

SESSION = "5e55" * 8


class FakeMirrord:
    """A line server following the contract's conversation, scripted by the test."""

    def __init__(self, init: list[bytes], serial: int, tls: ssl.SSLContext | None = None) -> None:
        self.init, self.serial, self.tls = init, serial, tls
        self.secret: bytes | None = None
        self.forged: bytes | None = None  # if set: challenge, take any AUTH, answer this
        self.handshake_failures = 0
        self.batches: list[list[bytes]] = []
        self.received: list[bytes] = []
        self.connections = 0
        self.cond = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def queue(self, serial: int, records: list[bytes]) -> None:
        with self.cond:
            self.batches.append([b"SERIAL:%d" % serial, *records, b"EOF"])
            self.cond.notify_all()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1
                return
        reader = conn.makefile("rb")
        try:
            for raw in reader:
                line = raw.rstrip(b"\r\n")
                self.received.append(line)
                if line == b"START":
                    challenge = self.secret or self.forged
                    out = [b"CHALLENGE:" + b"ab" * 16] if challenge else [b"OK"]
                elif line.startswith(b"AUTH:") and self.forged:
                    out = [self.forged]
                elif line.startswith(b"AUTH:"):
                    proof, _, nonce = line[5:].decode().partition(":")
                    secret = self.secret or b""
                    if proof != client_proof(secret, "ab" * 16, nonce, b""):
                        conn.sendall(b"AUTH FAILED\r\n")
                        conn.close()
                        return
                    out = [b"OK:" + server_proof(secret, "ab" * 16, nonce, b"").encode()]
                elif line == b"INIT":
                    out = [b"SESSION:" + SESSION.encode(), b"SERIAL:%d" % self.serial, *self.init]
                    out.append(b"EOF")
                elif line.startswith(b"SN:"):
                    ok = line.split(b":")[1].split(b",")[0] == SESSION.encode()
                    out = [b"OK" if ok else b"SESSION INVALID"]
                elif line == b"NEXT":
                    with self.cond:
                        self.cond.wait_for(lambda: self.batches)
                        out = self.batches.pop(0)
                else:
                    out = [b"INVALID COMMAND"]
                conn.sendall(b"".join(x + b"\r\n" for x in out))
        except OSError:
            pass

    def drop_all(self) -> None:
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.drop_all()
        with self.cond:
            self.batches.extend([[b"EOF"]] * 10)  # unblock waiting handlers
            self.cond.notify_all()


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    root = tmp_path / "worker"
    (root / "srv/www").mkdir(parents=True)
    (root / "srv/www/index.html").write_bytes(b"<h1>hi</h1>")
    return root


@pytest.fixture
def server():
    s = FakeMirrord([b"CREATE:/srv/www\tmode=755", b"FWRITE:/srv/www/index.html\tmode=640"], 5)
    yield s
    s.close()


def fs_mirror(port: int, datadir: Path, *extra: str) -> Proc:
    return Proc(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={port}",
            "-o",
            "reconnect.max=1",
            f"--datadir={datadir}",
            *extra,
        ]
    )


def local(worker: Path) -> list[str]:
    return ["-o", "fssync.type=local", "-o", f"fssync.root={worker}"]


def test_init_next_stop_and_resume(tmp_path, worker, server):
    """INIT is applied ('init finished', -v lines), batches follow, SIGTERM exits 0, SN resumes."""
    data = tmp_path / "data"
    client = fs_mirror(server.port, data, "-v", *local(worker))
    try:
        client.wait_line("init finished")
        assert (data / "srv/www/index.html").read_bytes() == b"<h1>hi</h1>"
        assert (data / "srv/www/index.html").stat().st_mode & 0o777 == 0o640
        client.wait_line(f"WRITE FILE '/srv/www/index.html', PREFIX '{data}'")
        (worker / "srv/www/new").write_bytes(b"new")
        server.queue(7, [b"FWRITE:/srv/www/new", b"SYMLINK:/srv/www/l\tnew"])
        wait_for(lambda: (data / "sn").read_text() == f"{SESSION},7\n", message="serial 7")
        assert os.readlink(data / "srv/www/l") == "new"
    finally:
        assert client.stop() == 0
    again = fs_mirror(server.port, data, *local(worker))
    try:
        again.wait_line("resumed session")
        assert f"SN:{SESSION},7".encode() in server.received
        assert "init finished" not in again.output()
    finally:
        assert again.stop() == 0


def test_reconnects_after_connection_drop(tmp_path, worker, server):
    """When the server drops the connection, fs_mirror reconnects by itself and resumes."""
    data = tmp_path / "data"
    client = fs_mirror(server.port, data, *local(worker))
    try:
        client.wait_line("init finished")
        server.drop_all()
        client.wait_line("resumed session", timeout=20)
        assert server.connections >= 2 and server.received.count(b"INIT") == 1
    finally:
        assert client.stop() == 0


def test_report_mode_changes_nothing(tmp_path, server):
    """fssync.type=report records the INIT as its baseline, prints later records and writes
    no mirror files."""
    data = tmp_path / "ids"
    client = fs_mirror(server.port, data, "-o", "fssync.type=report", "-o", "report.format=json")
    try:
        client.wait_line("init finished")
        client.wait_line('"event":"baseline"')
        assert client.count("index.html") == 0
        server.queue(6, [b"ATTRIB:/srv/www/index.html\tmode=4755"])
        client.wait_line('"ATTRIB"')
        line = next(x for x in client.lines if '"ATTRIB"' in x)
        assert json.loads(line[line.index("{") :])["mode"] in ("4755", "04755")
        assert sorted(p.name for p in data.iterdir()) == [".fs_mirror.d", ".fs_mirror.lock", "sn"]
    finally:
        assert client.stop() == 0


def test_second_instance_refused(tmp_path, worker, server):
    """A second fs_mirror on the same datadir exits 1 naming the holder's pid."""
    data = tmp_path / "data"
    first = fs_mirror(server.port, data, *local(worker))
    try:
        first.wait_line("init finished")
        second = subprocess.run(
            [
                command("fs_mirror"),
                "-o",
                "host=127.0.0.1",
                "-o",
                f"port={server.port}",
                *local(worker),
                f"--datadir={data}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"another fs_mirror holds {data}/sn (pid {first.popen.pid})" in second.stderr
    finally:
        assert first.stop() == 0


def test_config_error_exits_2_naming_key(tmp_path):
    """A bad key value exits 2 with one line naming the key."""
    proc = subprocess.run(
        [
            command("fs_mirror"),
            "-o",
            "host=h",
            "-o",
            "fssync.type=carrier-pigeon",
            f"--datadir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "fssync.type" in proc.stderr


def test_sigint_exits_0(tmp_path, worker, server):
    """SIGINT is a clean stop too."""
    client = fs_mirror(server.port, tmp_path / "data", *local(worker))
    client.wait_line("init finished")
    client.signal(signal.SIGINT)
    assert client.popen.wait(30) == 0


def test_rotate_flag(tmp_path, worker, server):
    """--rotate makes today's hard-link backup in rotate.backdir and exits 0."""
    data = tmp_path / "data"
    client = fs_mirror(server.port, data, *local(worker))
    client.wait_line("init finished")
    assert client.stop() == 0
    proc = subprocess.run(
        [
            command("fs_mirror"),
            "-o",
            "host=roc",
            "-o",
            "fssync.type=local",
            f"--datadir={data}",
            "-o",
            f"rotate.backdir={tmp_path / 'back'}",
            "--rotate",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    day = tmp_path / "back/roc" / datetime.date.today().isoformat()
    assert os.path.samefile(day / "srv/www/index.html", data / "srv/www/index.html")
    assert not (day / "sn").exists()


def test_next_run_from_wall_clock():
    """next_run gives the seconds to the next HH:MM, tomorrow when today's has passed."""
    now = datetime.datetime(2026, 11, 22, 10, 0).timestamp()
    assert next_run(now, "11:30") == pytest.approx(5400)
    assert next_run(now, "09:00") == pytest.approx(23 * 3600)
    assert next_run(now, "10:00") == pytest.approx(24 * 3600)


def test_daily_rotation_runs_and_reschedules():
    """DailyRotation fires at rotate.at with that day's date and schedules the next day."""
    clock = Clock()
    clock.advance(datetime.datetime(2026, 11, 22, 1, 0).timestamp())
    days: list[datetime.date] = []

    def job(day):
        from twisted.internet.defer import succeed

        days.append(day)
        return succeed(None)

    rotation = DailyRotation("03:00", job, clock)
    rotation.startService()
    clock.advance(2 * 3600 - 1)
    assert days == []
    clock.advance(1)
    assert days == [datetime.date(2026, 11, 22)]
    clock.advance(24 * 3600)
    assert days == [datetime.date(2026, 11, 22), datetime.date(2026, 11, 23)]
    rotation.stopService()
    assert clock.getDelayedCalls() == []


def make_cert(where: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) made by the openssl command."""
    cert, key = where / f"{name}.pem", where / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_verified_against_ca(tmp_path, worker):
    """tls=yes speaks TLS verified against tls.ca; a server the CA did not sign is refused."""
    cert, key = make_cert(tmp_path, "server")
    other, _ = make_cert(tmp_path, "other")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = FakeMirrord([b"CREATE:/srv/www"], 3, tls=ctx)
    try:
        wrong = fs_mirror(
            server.port, tmp_path / "w", "-o", "tls=yes", "-o", f"tls.ca={other}", *local(worker)
        )
        try:
            wait_for(lambda: server.handshake_failures >= 1, 30, message="refused handshake")
            assert not (tmp_path / "w/srv").exists()
        finally:
            assert wrong.stop() == 0
        right = fs_mirror(
            server.port, tmp_path / "r", "-o", "tls=yes", "-o", f"tls.ca={cert}", *local(worker)
        )
        try:
            right.wait_line("init finished")
            assert (tmp_path / "r/srv/www").is_dir()
        finally:
            assert right.stop() == 0
    finally:
        server.close()


def test_corrupt_sn_exits_1_saying_what_to_do(tmp_path):
    """A garbled sn file stops fs_mirror with exit 1 and tells how to force a full resync."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "sn").write_text("garbage\n")
    proc = subprocess.run(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            "fssync.type=report",
            f"--datadir={data}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "remove it to force a full resync" in proc.stderr


def test_auth_with_shared_secret(tmp_path, worker, server):
    """The right auth.secret-from gets through the challenge; a wrong one exits 1 saying why."""
    server.secret = b"sesame"
    secrets = tmp_path / "secrets"
    secrets.write_text("good sesame\nbad open-up\n")
    secrets.chmod(0o600)
    good = fs_mirror(
        server.port, tmp_path / "g", "-o", f"auth.secret-from={secrets}:good", *local(worker)
    )
    try:
        good.wait_line("init finished")
    finally:
        assert good.stop() == 0
    bad = fs_mirror(
        server.port, tmp_path / "b", "-o", f"auth.secret-from={secrets}:bad", *local(worker)
    )
    assert bad.popen.wait(30) == 1
    bad._reader.join(2)
    assert "check auth.secret-from" in bad.output()


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        (None, "answered START with a plain OK"),
        (b"OK", "server's proof does not verify"),
        (b"OK:" + b"0" * 64, "server's proof does not verify"),
    ],
    ids=["plain-ok-to-start", "plain-ok-to-auth", "wrong-proof"],
)
def test_an_impostor_mirrord_is_refused_and_retried(tmp_path, worker, forged, why):
    """With a secret, a server that does not prove it knows it (a plain OK to START, or to
    AUTH, or OK with a wrong proof) gets no INIT: nothing is applied, fs_mirror retries.

    Issue 9: fs_mirror with a secret accepted a fake server's plain OK and applied its
    CREATE:/fake.
    """
    fake = FakeMirrord([b"CREATE:/fake\tmode=755", b"CREATE:/srv/www\tmode=755"], 5)
    fake.forged = forged
    secrets = tmp_path / "secrets"
    secrets.write_text("good sesame\n")
    secrets.chmod(0o600)
    datadir = tmp_path / "m"
    proc = fs_mirror(fake.port, datadir, "-o", f"auth.secret-from={secrets}:good", *local(worker))
    try:
        applied = datadir / "fake"
        wait_for(lambda: fake.connections >= 3 or applied.exists(), 30, 0.02, "retries")
        assert not applied.exists(), "applied the impostor's CREATE:/fake"
        assert b"INIT" not in fake.received
        assert proc.popen.poll() is None  # not fatal: the real mirrord may answer next time
        proc.wait_line(why, 10, count=2)  # each refusal is logged
        assert not (datadir / "sn").exists() and not (datadir / "srv").exists()
    finally:
        assert proc.stop() == 0
        fake.close()
