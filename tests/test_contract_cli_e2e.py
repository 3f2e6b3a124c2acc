"""The contract's daemons at work, run from outside as real subprocesses.

Daemon mode and signals, fs_mirror's documented options, its -v lines, the
sn file and its lock, atomic replacement, and paths that are hard to carry
over the wire (newline, TAB, CR, DEL, %, non-UTF-8), seen through the real
mirrord and fs_mirror commands.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, mirror_of, tree_diff
from tests.helpers import wait_for
from tests.test_contract_cli import one_line_error, run

WEIRD_NAMES = [
    b"nl\nx",
    b"tab\tx",
    b"cr\rx",
    b"del\x7fx",
    b"pc%x",
    b"bad\xffx",
    "\u00e9t\u00e9".encode(),
]


def test_mirrord_sigint_is_exit_0(worker):
    """mirrord stops with exit 0 on SIGINT."""
    worker.proc.signal(signal.SIGINT)
    assert worker.proc.popen.wait(30) == 0


def test_mirrord_stops_on_sigint_even_if_started_ignoring_it(tmp_path, src):
    """A shell's background job starts with SIGINT ignored; mirrord still stops on it (exit 0)."""
    w = Worker(tmp_path / "w", [src])
    w.proc = Proc(w.argv, prefix=["sh", "-c", 'trap "" INT; exec "$@"', "sh"])
    try:
        w.proc.wait_line("boot init finished", 60)
        w.proc.signal(signal.SIGINT)
        assert w.proc.popen.wait(30) == 0
    finally:
        w.proc.kill()


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_mirrord_daemon_pidfile(tmp_path, src):
    """--daemon --pidfile returns 0 once serving, even with output captured; SIGTERM cleans up."""
    w = Worker(tmp_path / "w", [src])
    pidfile = tmp_path / "m.pid"
    done = subprocess.run(
        [*w.argv, "--daemon", "--pidfile", str(pidfile)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "boot init finished" in done.stderr
    pid = int(pidfile.read_text())
    try:
        client = w.client()
        client.send(b"START")
        assert client.recv_line() == b"OK"
        client.close()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), timeout=30, message="pidfile removed")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, message="exited")
    finally:
        kill_quietly(pid)


def test_mirrord_daemon_failing_to_start_is_exit_1(tmp_path, src):
    """--daemon with a port in use: the caller gets exit 1 and the reason; no pidfile is left."""
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        w = Worker(tmp_path / "w", [src], port=busy.getsockname()[1])
        pidfile = tmp_path / "m.pid"
        done = subprocess.run(
            [*w.argv, "--daemon", "--pidfile", str(pidfile)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    finally:
        busy.close()
    assert done.returncode == 1
    assert "-o port=" in done.stderr and "Traceback" not in done.stderr
    wait_for(lambda: not pidfile.exists(), timeout=30, message="pidfile removed")


def test_fs_mirror_daemon_pidfile(worker, tmp_path, src):
    """fs_mirror --daemon --pidfile returns 0, mirrors in the background, SIGTERM cleans up."""
    pidfile = tmp_path / "f.pid"
    mir = tmp_path / "mir"
    done = run(
        "fs_mirror",
        "-o",
        "host=127.0.0.1",
        "-o",
        f"port={worker.port}",
        "-o",
        "fssync.type=local",
        f"--datadir={mir}",
        "--daemon",
        "--pidfile",
        str(pidfile),
    )
    assert done.returncode == 0, done.stderr
    pid = int(pidfile.read_text())
    try:
        wait_for(lambda: (mirror_of(mir, src) / "index.php").exists(), timeout=30)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), timeout=30, message="pidfile removed")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, message="exited")
    finally:
        kill_quietly(pid)


def test_mirrord_serves_several_identities(tmp_path, src):
    """-o identities=a,b serves the include roots of both identities."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "w.html").write_bytes(b"w")
    dd = f"datadir={tmp_path / 'w'}"
    assert run("fs_info", "-o", dd, "-a", f"t:{web}", "web").returncode == 0
    w = Worker(tmp_path / "w", [src], options=["-o", "identities=system,web"])
    w.start()
    try:
        heads = [x.split(b"\t")[0] for x in start_init(w.client())]
    finally:
        assert w.stop() == 0
    assert b"CREATE:" + bytes(src) in heads and b"CREATE:" + bytes(web) in heads
    assert b"FWRITE:" + bytes(web) + b"/w.html" in heads


def make_weird(src: Path) -> None:
    weird = bytes(src) + b"/weird"
    os.mkdir(weird)
    for name in WEIRD_NAMES:
        with open(weird + b"/" + name, "wb") as f:
            f.write(name)
    os.symlink(b"tab\tx", weird + b"/link")


def test_fs_mirror_end_to_end_contract(worker, tmp_path, src):
    """fs_mirror with the documented options: init finished, -v lines, sn, lock, weird names."""
    make_weird(src)
    mir = tmp_path / "mir"
    secrets = tmp_path / "secrets"
    secrets.write_text("worker pw\n")
    secrets.chmod(0o600)
    argv = [
        command("fs_mirror"),
        "-v",
        "-o",
        "host=127.0.0.1",
        "-o",
        f"port={worker.port}",
        "-o",
        "fssync.type=local",
        "-o",
        "fssync.root=/",
        "-o",
        "fssync.user=mirror",
        "-o",
        "fssync.port=21",
        f"--password-from={secrets}:worker",
        "--datadir",
        str(mir),
    ]
    client = Proc(argv)
    try:
        client.wait_line("init finished", 60)
        line = f"WRITE FILE '{src}/index.php', PREFIX '{mir}'"
        assert any(x.endswith(line) for x in client.lines), client.output()
        assert tree_diff(src, mirror_of(mir, src)) == []
        assert re.fullmatch(r"[0-9a-f]{32},[0-9]+", (mir / "sn").read_text().strip())
        fd = os.open(mir / "sn", os.O_RDWR)
        try:
            with pytest.raises(OSError):
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        backup = tmp_path / "backup.php"
        os.link(mirror_of(mir, src) / "index.php", backup)  # a rotated backup's hard link
        (src / "index.php").write_bytes(b"<?php echo 2;\n")
        (src / "late.txt").write_bytes(b"late")
        wait_for(lambda: (mirror_of(mir, src) / "late.txt").exists(), timeout=30)
        wait_for(lambda: (mirror_of(mir, src) / "index.php").read_bytes() == b"<?php echo 2;\n")
        assert backup.read_bytes() == b"<?php\n"
        second = run(
            "fs_mirror",
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={worker.port}",
            "-o",
            "fssync.type=local",
            f"--datadir={mir}",
        )
        one_line_error(second, 1, str(mir))
    finally:
        assert client.stop() == 0


def test_fs_mirror_v_is_one_line_per_record(worker, tmp_path, src):
    """-v prints exactly one line per applied record, even for a name with a newline."""
    make_weird(src)
    mir = tmp_path / "mir"
    argv = [
        command("fs_mirror"),
        "-v",
        "-o",
        "host=127.0.0.1",
        "-o",
        f"port={worker.port}",
        "-o",
        "fssync.type=local",
        f"--datadir={mir}",
    ]
    client = Proc(argv)
    try:
        client.wait_line("init finished", 60)
        writes = [x for x in client.lines if "WRITE FILE" in x]
        assert len(writes) == len(WEIRD_NAMES) + 1, client.output()
        assert all(x.endswith(f", PREFIX '{mir}'") for x in writes), client.output()
        assert all(re.match(r"\d{4}-\d\d-\d\dT", x) for x in client.lines), client.output()
    finally:
        assert client.stop() == 0


def start_init(client) -> list[bytes]:
    client.send(b"START", b"\r\n")
    assert client.recv_line() == b"OK"
    client.send(b"INIT", b"\r\n")
    return client.lines_until(b"EOF")


def test_wire_paths_are_escaped_and_fields_formatted(tmp_path, src):
    """Control bytes and % go as %XX, other bytes raw; mode is octal, mtime decimal."""
    make_weird(src)
    os.chmod(src / "weird", 0o2750)
    w = Worker(tmp_path / "w", [src])
    w.start()
    try:
        lines = start_init(w.client())
    finally:
        assert w.stop() == 0
    weird = bytes(src) + b"/weird/"
    heads = {line.split(b"\t")[0] for line in lines}
    wires = [b"nl%0Ax", b"tab%09x", b"cr%0Dx", b"del%7Fx", b"pc%25x", b"bad\xffx"]
    for wire in [*wires, "\u00e9t\u00e9".encode()]:
        assert b"FWRITE:" + weird + wire in heads, lines
    assert any(line.startswith(b"SYMLINK:" + weird + b"link\ttab%09x") for line in lines)
    created = next(x for x in lines if x.startswith(b"CREATE:" + weird[:-1] + b"\t"))
    fields = dict(f.split(b"=", 1) for f in created.split(b"\t")[1:])
    assert fields[b"mode"] == b"2750"
    assert re.fullmatch(rb"[0-9]+(\.[0-9]+)?", fields[b"mtime"])


def test_init_is_served_while_another_client_waits_in_next(worker, src):
    """A client blocked in NEXT holds up nobody: another INITs meanwhile, then both move on."""
    waiting = worker.client()
    start_init(waiting)
    waiting.send(b"NEXT", b"\r\n")
    other = worker.client()
    snapshot = start_init(other)
    assert b"FWRITE:" + bytes(src) + b"/index.php" in [x.split(b"\t")[0] for x in snapshot]
    (src / "new.txt").write_bytes(b"new")
    batch = waiting.lines_until(b"EOF")
    assert re.fullmatch(rb"SERIAL:[0-9]+", batch[0])
    assert any(x.startswith(b"FWRITE:" + bytes(src) + b"/new.txt") for x in batch), batch
    other.send(b"NEXT")
    assert any(
        x.startswith(b"FWRITE:" + bytes(src) + b"/new.txt") for x in other.lines_until(b"EOF")
    )
