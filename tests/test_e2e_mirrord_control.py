"""A real mirrord steered and queried from outside: -k, auth, TLS, log trimming, kill -9."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrord import control
from protocol.records import Record
from tests.daemons import LineClient, Replay, Worker, assert_clean_output, command, fs_info
from tests.helpers import wait_for


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(includes: list[Path], options: list[str] = (), excludes: list[Path] = ()) -> Worker:
        w = Worker(tmp_path / "data", includes, excludes, options=list(options))
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        if w.proc is not None and w.proc.popen.poll() is None:
            assert w.stop() == 0
        assert_clean_output(w.proc)


def ctl(worker: Worker, *words: str) -> subprocess.CompletedProcess[str]:
    argv = [command("mirrord"), "-o", f"datadir={worker.datadir}", "-k", *words]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def paths_of(received: list[tuple[int, bytes]]) -> list[tuple[str, bytes]]:
    recs = [Record.decode(line) for _, line in received]
    return [(r.action.value, r.path) for r in recs]


def test_include_and_exclude_at_run_time(make_worker, tmp_path):
    """-k include streams and watches a new tree; -k exclude deletes one; both persist."""
    src, other = tmp_path / "src", tmp_path / "other"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "c").write_bytes(b"c")
    (src / "keep").write_bytes(b"k")
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "o").write_bytes(b"oo")
    w = make_worker([src])
    r = Replay(w.client()).init()
    b = os.fsencode

    done = ctl(w, "include", str(other))
    assert done.returncode == 0, done.stderr
    assert "including" in done.stdout
    r.converge([src, other])
    assert ("CREATE", b(other)) in paths_of(r.received)
    assert ("FWRITE", b(other / "sub" / "o")) in paths_of(r.received)
    (other / "sub" / "watched").write_bytes(b"now watched")
    r.converge([src, other])

    done = ctl(w, "exclude", str(src / "cache"))
    assert done.returncode == 0, done.stderr
    r.converge([src, other], [src / "cache"])
    assert ("DELETE", b(src / "cache")) in paths_of(r.received)
    mark = len(r.received)
    (src / "cache" / "ignored").write_bytes(b"not reported")
    (src / "after").write_bytes(b"reported")
    r.converge([src, other], [src / "cache"])
    assert {p for _, p in paths_of(r.received[mark:])} == {b(src / "after")}

    listed = fs_info("-o", f"datadir={w.datadir}", "-l")
    assert listed.returncode == 0, listed.stderr
    assert str(other) in listed.stdout and str(src / "cache") in listed.stdout

    status = ctl(w, "status")
    assert status.returncode == 0, status.stderr
    head = re.search(r"head serial:\s+(\d+)", status.stdout)
    assert head and int(head.group(1)) == r.serial, status.stdout
    assert f"session:          {r.session}" in status.stdout
    assert re.search(r"oldest retained:\s+\d+", status.stdout)
    assert re.search(r"watched dirs:\s+[1-9]", status.stdout)
    assert re.search(rf"serial {r.serial}\s+lag 0", status.stdout), status.stdout

    r.client.close()
    assert w.stop() == 0
    (other / "while-down").write_bytes(b"d")
    (src / "cache" / "also-ignored").write_bytes(b"x")
    w.start()
    again = Replay(w.client())
    again.model = r.model
    assert again.resume(r.session, r.serial) == b"OK"
    again.converge([src, other], [src / "cache"])
    assert {p for _, p in paths_of(again.received)} == {b(other / "while-down")}


def test_include_and_exclude_refuse_bad_paths(make_worker, tmp_path):
    """Bad -k paths exit 1 with a message saying why; the daemon keeps running."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(b"f")
    w = make_worker([src])
    cases = [
        (("include", str(tmp_path / "missing")), "not an existing directory"),
        (("include", str(src / "file")), "not an existing directory"),
        (("exclude", str(tmp_path / "elsewhere")), "not inside an include"),
    ]
    for words, message in cases:
        done = ctl(w, *words)
        assert done.returncode == 1, (words, done)
        assert message in done.stderr, (words, done.stderr)
    sock = str(w.datadir / "mirrord.sock")
    reply = control.request(sock, "include", str(src) + "/../src/.")
    assert reply["ok"] is False and "normalised" in reply["error"]
    listed = fs_info("-o", f"datadir={w.datadir}", "-l")
    assert "missing" not in listed.stdout and "elsewhere" not in listed.stdout
    assert ctl(w, "status").returncode == 0


def test_auth_challenge(make_worker, tmp_path):
    """With a secret, START gets CHALLENGE; a right AUTH gets OK:<Ps>, a wrong one AUTH FAILED.

    The proofs are computed here by hand from contract 2.1 (no TLS: the binding is empty).
    """
    src = tmp_path / "src"
    src.mkdir()
    secrets = tmp_path / "secrets"
    secrets.write_text("other nope\nmirror s3cret-value\n")
    secrets.chmod(0o600)
    w = make_worker([src], ["-o", f"auth.secret-from={secrets}:mirror"])

    def proof(role: bytes, secret: bytes, ns: bytes, nc: bytes) -> bytes:
        return hmac.new(secret, role + b"\0" + ns + nc, hashlib.sha256).hexdigest().encode()

    c = w.client()
    c.send(b"START")
    challenge = c.recv_line()
    assert re.fullmatch(rb"CHALLENGE:[0-9a-f]{32}", challenge), challenge
    ns, nc = bytes.fromhex(challenge.split(b":")[1].decode()), os.urandom(16)
    c.send(b"AUTH:%s:%s" % (proof(b"mirror-client", b"s3cret-value", ns, nc), nc.hex().encode()))
    assert c.recv_line() == b"OK:" + proof(b"mirror-server", b"s3cret-value", ns, nc)
    c.send(b"INIT")
    assert c.lines_until(b"EOF")[-1] == b"EOF"
    bad = w.client()
    bad.send(b"START")
    ns = bytes.fromhex(bad.recv_line().split(b":")[1].decode())
    bad.send(b"AUTH:%s:%s" % (proof(b"mirror-client", b"wrong", ns, nc), nc.hex().encode()))
    assert bad.recv_line() == b"AUTH FAILED"
    assert bad.closed()


def test_tls_only(make_worker, tmp_path):
    """With tls.cert/tls.key the port speaks TLS only: plain text gets nothing, TLS works."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    w = make_worker([src], ["-o", f"tls.cert={cert}", "-o", f"tls.key={key}"])
    plain = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    plain.sendall(b"START\r\n")
    got = b""
    try:
        while chunk := plain.recv(4096):
            got += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    plain.close()
    assert b"OK" not in got and b"SESSION" not in got
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    c = LineClient("127.0.0.1", w.port)
    c.sock = context.wrap_socket(c.sock, server_hostname="localhost")
    r = Replay(c).init()
    assert r.model[os.fsencode(src / "f")][0] == "file"
    (src / "g").write_bytes(b"gg")
    r.converge([src])


def status_of(worker: Worker) -> dict[str, int]:
    done = ctl(worker, "status")
    assert done.returncode == 0, done.stderr
    found = re.search(r"head serial:\s+(\d+)\s+oldest retained:\s+(\d+)", done.stdout)
    assert found, done.stdout
    return {"head": int(found.group(1)), "oldest": int(found.group(2))}


def test_trimmed_log_refuses_old_serials(make_worker, tmp_path):
    """With loglen=10, after 30 changes an SN from before them is SERIAL OVERDUE OR INVALID."""
    src = tmp_path / "src"
    src.mkdir()
    w = make_worker([src], ["-o", "loglen=10"])
    r = Replay(w.client()).init()
    r.client.close()
    start = r.serial
    for i in range(30):
        (src / f"f{i}").write_bytes(b"x")
    wait_for(lambda: status_of(w)["head"] >= start + 30, 10, 0.05, "30 records")
    now = status_of(w)
    assert now["oldest"] == now["head"] - 9
    old = Replay(w.client())
    assert old.resume(r.session, start) == b"SERIAL OVERDUE OR INVALID"
    old.client.send(f"SN:{r.session},{now['head'] - 5}".encode())
    assert old.client.recv_line() == b"OK"
    old.serial = now["head"] - 5
    assert old.pump(5)
    serials = [s for s, _ in old.received]
    assert serials[:5] == list(range(now["head"] - 4, now["head"] + 1))


def test_kill_9_keeps_session_and_serials(make_worker, tmp_path):
    """After kill -9 mid-burst: same session, seen serials keep their records, replay converges."""
    src = tmp_path / "src"
    (src / "burst").mkdir(parents=True)
    w = make_worker([src])
    r = Replay(w.client()).init()
    first = r.serial
    stop = threading.Event()

    written = []

    def write() -> None:
        after = 0  # files written once told to stop: mirrord was killed mid-burst
        for i in range(10**6):  # bounded only for safety: runs until told, then a bit more
            if stop.is_set():
                after += 1
                if after > 20:
                    return
            (src / "burst" / f"f{i:06}").write_bytes(b"%d" % i * 50)
            written.append(i)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_for(lambda: r.pump(0.1) and len(r.received) >= 50, 20, 0, "records before kill")
        w.proc.kill()
        at_kill = len(written)
    finally:
        stop.set()
        writer.join(30)
    assert at_kill < len(written), "the burst ended before the kill"
    seen = list(r.received)
    assert_clean_output(w.proc)
    w.start()
    check = Replay(w.client())
    assert check.resume(r.session, first) == b"OK"
    wait_for(lambda: check.pump(0.2) and len(check.received) >= len(seen), 15, 0, "old records")
    assert check.received[: len(seen)] == seen
    again = Replay(w.client())
    again.model = r.model
    assert again.resume(r.session, r.serial) == b"OK"
    again.converge([src])
    assert again.received and again.received[0][0] == r.serial + 1


def test_including_an_excluded_sub_tree_takes_the_exclusion_back_and_nothing_more(
    make_worker, tmp_path
):
    """-k include of x:/src/cache under t:/src leaves t:/src alone in the lists: a
    redundant t:/src/cache would keep the cache served once /src is removed."""
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "c").write_bytes(b"c")
    w = make_worker([src], excludes=[src / "cache"])
    r = Replay(w.client()).init()
    done = ctl(w, "include", str(src / "cache"))
    assert done.returncode == 0, done.stderr
    r.converge([src])
    assert ("FWRITE", os.fsencode(src / "cache" / "c")) in paths_of(r.received)
    listed = fs_info("-o", f"datadir={w.datadir}", "-l")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"t:{src}"]
