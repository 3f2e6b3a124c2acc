"""The wire protocol of a real mirrord, spoken over real TCP as telnet would."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.daemons import LineClient, Worker


@pytest.fixture
def worker(tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n")
    (src / "sub" / "b.bin").write_bytes(b"\0" * 100)
    os.symlink("a.txt", src / "link")
    w = Worker(tmp_path / "data", [src])
    w.src = src
    w.start()
    yield w
    w.stop()


def start_init(client: LineClient) -> list[bytes]:
    client.send(b"START")
    assert client.recv_line() == b"OK"
    client.send(b"INIT")
    return client.lines_until(b"EOF")


def test_init_streams_the_snapshot_in_order(worker):
    """INIT sends SESSION, SERIAL, then every directory before its contents, then EOF."""
    c = worker.client()
    lines = start_init(c)
    assert re.fullmatch(rb"SESSION:[0-9a-f]{32}", lines[0])
    assert re.fullmatch(rb"SERIAL:\d+", lines[1])
    body = [line.split(b"\t")[0] for line in lines[2:-1]]
    src = bytes(worker.src)
    assert body[0] == b"CREATE:" + src
    assert b"FWRITE:" + src + b"/a.txt" in body
    assert b"SYMLINK:" + src + b"/link" in body
    assert body.index(b"CREATE:" + src + b"/sub") < body.index(b"FWRITE:" + src + b"/sub/b.bin")
    link = next(line for line in lines if line.startswith(b"SYMLINK:"))
    assert link.split(b"\t")[1] == b"a.txt"
    c.close()


def test_next_waits_for_a_change_and_reports_it(worker):
    """NEXT blocks until the tree changes, then returns SERIAL, the record and EOF."""
    c = worker.client()
    lines = start_init(c)
    serial = int(lines[1].split(b":")[1])
    c.send(b"NEXT")
    (worker.src / "new.txt").write_bytes(b"x")
    batch = c.lines_until(b"EOF", timeout=10)
    assert int(batch[0].split(b":")[1]) > serial
    assert any(line.startswith(b"FWRITE:" + bytes(worker.src) + b"/new.txt") for line in batch)
    c.close()


def test_crlf_and_bare_lf_both_accepted(worker):
    """A telnet client ends lines with CRLF, nc with LF: both work."""
    c = worker.client()
    c.send(b"START", end=b"\r\n")
    assert c.recv_line() == b"OK"
    c.send(b"INIT", end=b"\r\n")
    assert c.lines_until(b"EOF")[-1] == b"EOF"
    c.close()


@pytest.mark.parametrize("first", [b"INIT", b"NEXT", b"HELLO", b"", b"start"])
def test_anything_but_start_first_is_refused(worker, first):
    """A first line other than START gets INVALID COMMAND and a close."""
    c = worker.client()
    c.send(first)
    assert c.recv_line() == b"INVALID COMMAND"
    assert c.closed()


def test_after_start_only_init_or_sn(worker):
    """After START, a line other than INIT or SN gets INVALID INIT COMMAND and a close."""
    c = worker.client()
    c.send(b"START")
    assert c.recv_line() == b"OK"
    c.send(b"NEXT")
    assert c.recv_line() == b"INVALID INIT COMMAND"
    assert c.closed()


def test_unknown_session_keeps_connection_open(worker):
    """SN with an unknown session answers SESSION INVALID and the client may INIT."""
    c = worker.client()
    c.send(b"START")
    assert c.recv_line() == b"OK"
    c.send(b"SN:" + b"0" * 32 + b",1")
    assert c.recv_line() == b"SESSION INVALID"
    c.send(b"INIT")
    assert c.lines_until(b"EOF")[-1] == b"EOF"
    c.close()


def test_serial_out_of_range_keeps_connection_open(worker):
    """SN with a serial past the head answers SERIAL OVERDUE OR INVALID, connection stays."""
    c = worker.client()
    lines = start_init(c)
    session = lines[0].split(b":")[1]
    c.close()
    c = worker.client()
    c.send(b"START")
    assert c.recv_line() == b"OK"
    c.send(b"SN:" + session + b",999999999")
    assert c.recv_line() == b"SERIAL OVERDUE OR INVALID"
    head = int(lines[1].split(b":")[1])
    c.send(b"SN:" + session + b"," + str(head).encode())
    assert c.recv_line() == b"OK"
    c.close()


def test_after_init_only_next(worker):
    """After INIT, anything but NEXT gets INVALID REALTIME COMMAND and a close."""
    c = worker.client()
    start_init(c)
    c.send(b"INIT")
    assert c.recv_line() == b"INVALID REALTIME COMMAND"
    assert c.closed()


def test_hostile_lines_close_only_that_connection(worker):
    """An over-long line or raw garbage closes that connection; others keep working."""
    good = worker.client()
    start_init(good)
    long_line = worker.client()
    long_line.sock.sendall(b"A" * (70 * 1024) + b"\n")
    assert long_line.recv_line() == b"INVALID COMMAND"
    assert long_line.closed()
    garbage = worker.client()
    garbage.sock.sendall(bytes(range(256)) * 4 + b"\n")
    assert garbage.recv_line() == b"INVALID COMMAND"
    assert garbage.closed()
    good.send(b"NEXT")
    (worker.src / "after.txt").write_bytes(b"still serving")
    assert any(b"after.txt" in line for line in good.lines_until(b"EOF"))
    assert worker.proc.popen.poll() is None


def test_session_survives_restart_and_changes_while_down_are_logged(tmp_path):
    """A restart keeps the session; changes made while down come as records (smooth boot)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"1")
    (src / "gone.txt").write_bytes(b"2")
    w = Worker(tmp_path / "data", [src])
    w.start()
    c = w.client()
    lines = start_init(c)
    session, serial = lines[0].split(b":")[1], lines[1].split(b":")[1]
    c.close()
    assert w.stop() == 0
    (src / "gone.txt").unlink()
    (src / "born.txt").write_bytes(b"3")
    w.start()
    c = w.client()
    c.send(b"START")
    assert c.recv_line() == b"OK"
    c.send(b"SN:" + session + b"," + serial)
    assert c.recv_line() == b"OK"
    c.send(b"NEXT")
    batch = c.lines_until(b"EOF")
    records = {line.split(b"\t")[0] for line in batch[1:-1]}
    assert b"DELETE:" + bytes(src) + b"/gone.txt" in records
    assert b"FWRITE:" + bytes(src) + b"/born.txt" in records
    c.close()
    w.stop()


def test_sigterm_exits_zero(worker):
    """mirrord stops cleanly with exit status 0 on SIGTERM."""
    worker.proc.signal(signal.SIGTERM)
    assert worker.proc.popen.wait(20) == 0
