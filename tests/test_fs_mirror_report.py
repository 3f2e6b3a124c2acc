"""The report mode: text and JSON lines, syslog, and the per-change hook."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from fs_mirror.report import Found, Reporter, format_mtime, text_path
from fs_mirror.syslog_out import SyslogUnreachable
from protocol.paths import unquote
from protocol.records import Action, Meta, Record
from tests.fetcher_contract import private_reactor, run_deferred

WRITE = Record(
    Action.FWRITE,
    b"/var/www/caf\xe9 %1\n",
    meta=Meta(mode=0o644, uid=33, gid=33, size=12, mtime_ns=1_700_000_000_250_000_000),
)
MOVE = Record(Action.MOVE, b"/var/a", target=b"/var/b")


def clock_at(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def test_text_line() -> None:
    """A text line has the UTC time, action, quoted path and the metadata."""
    out = io.StringIO()
    Reporter(out, "text", clock=clock_at(1_700_000_000.5)).report(WRITE, 42)
    assert out.getvalue() == (
        "2023-11-14T22:13:20.500+00:00 FWRITE '/var/www/caf%E9 %251%0A' serial=42 "
        "mode=0644 uid=33 gid=33 size=12 mtime=1700000000.25\n"
    )


def test_text_line_with_target() -> None:
    """A MOVE shows source -> target; no serial field when none is given."""
    out = io.StringIO()
    Reporter(out, clock=clock_at(0)).report(MOVE)
    assert out.getvalue() == "1970-01-01T00:00:00.000+00:00 MOVE '/var/a' -> '/var/b'\n"


def test_json_line() -> None:
    """A JSON line is one valid object whose path decodes back to the exact bytes."""
    out = io.StringIO()
    reporter = Reporter(out, "json", clock=clock_at(1_700_000_000))
    reporter.report(WRITE, 7)
    reporter.report(MOVE, 8)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["action"] == "FWRITE" and first["serial"] == 7
    assert unquote(first["path"].encode()) == WRITE.path
    assert (first["mode"], first["size"], first["mtime"]) == ("0644", "12", "1700000000.25")
    assert (second["path"], second["target"]) == ("/var/a", "/var/b")
    assert "target" not in first


def test_syslog_gets_each_line() -> None:
    """With syslog on, each report line is also handed to syslog."""
    sent: list[str] = []
    out = io.StringIO()
    Reporter(out, syslog=True, clock=clock_at(0), syslog_fn=sent.append).report(MOVE, 1)
    assert sent == [out.getvalue().rstrip("\n")]


def test_unknown_format_is_refused() -> None:
    """Only text and json are formats."""
    with pytest.raises(ValueError, match="xml"):
        Reporter(io.StringIO(), "xml", clock=clock_at(0))


def test_text_path_reversible() -> None:
    """text_path escapes controls, % and non-UTF-8 bytes, and unquote reverses it."""
    for raw in (b"/plain", b"/caf\xc3\xa9", b"/bad\xff\xfe", b"/100%\t\x7f", b"/\xe9t\xc3\xa9"):
        text = text_path(raw)
        text.encode("utf-8")  # always valid text
        assert unquote(text.encode()) == raw
    assert text_path(b"/caf\xc3\xa9") == "/café"


def test_format_mtime() -> None:
    """mtime is seconds with the fraction trimmed, as on the wire."""
    assert format_mtime(1_000_000_000) == "1"
    assert format_mtime(1_500_000_000) == "1.5"
    assert format_mtime(1_000_000_001) == "1.000000001"


def test_mtime_before_the_epoch_is_as_on_the_wire() -> None:
    """An mtime before 1970 prints with its sign in front, as the wire writes it: -0.5 s is -0.5."""
    assert format_mtime(-500_000_000) == "-0.5"
    assert format_mtime(-1_250_000_000) == "-1.25"
    assert format_mtime(-2_000_000_000) == "-2"
    old = Record(Action.ATTRIB, b"/old", meta=Meta(mtime_ns=-500_000_000))
    out = io.StringIO()
    Reporter(out, "text", clock=clock_at(0)).report(old)
    assert out.getvalue().endswith(" mtime=-0.5\n")
    assert b"mtime=-0.5" in old.encode()


HOOK = (
    "import os, sys\n"
    "keys = sorted(k for k in os.environb if k.startswith(b'FSM_'))\n"
    "data = b''.join(k + b'=' + os.environb[k] + b'\\0' for k in keys)\n"
    "open(os.path.join(sys.argv[1], os.environ['FSM_SERIAL']), 'wb').write(data)\n"
)


def read_env(path: Path) -> dict[bytes, bytes]:
    fields = path.read_bytes().split(b"\0")[:-1]
    return dict(f.split(b"=", 1) for f in fields)


def test_exec_hook_gets_the_change_in_its_environment(tmp_path: Path) -> None:
    """The hook runs once per change with FSM_* set; the path is the exact bytes."""
    with private_reactor() as reactor:
        argv = [sys.executable, "-c", HOOK, str(tmp_path)]
        reporter = Reporter(io.StringIO(), exec_argv=argv, reactor=reactor, clock=clock_at(0))
        reporter.report(WRITE, 5)
        reporter.report(MOVE, 6)
        run_deferred(reactor, reporter.close())
    first, second = read_env(tmp_path / "5"), read_env(tmp_path / "6")
    assert first == {
        b"FSM_ACTION": b"FWRITE",
        b"FSM_PATH": WRITE.path,
        b"FSM_TARGET": b"",
        b"FSM_MODE": b"0644",
        b"FSM_SIZE": b"12",
        b"FSM_MTIME": b"1700000000.25",
        b"FSM_UID": b"33",
        b"FSM_GID": b"33",
        b"FSM_SERIAL": b"5",
        b"FSM_FOUND": b"",
        b"FSM_SHA256": b"",
    }
    assert (second[b"FSM_ACTION"], second[b"FSM_TARGET"]) == (b"MOVE", b"/var/b")


def test_exec_queue_is_bounded(tmp_path: Path) -> None:
    """Past running + queued hooks, further changes skip the hook but are still printed."""
    out = io.StringIO()
    with private_reactor() as reactor:
        argv = [sys.executable, "-c", HOOK, str(tmp_path)]
        reporter = Reporter(
            out, exec_argv=argv, reactor=reactor, clock=clock_at(0), max_running=1, max_queued=1
        )
        for serial in range(1, 6):
            reporter.report(MOVE, serial)
        run_deferred(reactor, reporter.close())
    assert reporter.dropped == 3
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
    assert len(out.getvalue().splitlines()) == 5


def test_exec_missing_command_is_refused() -> None:
    """A hook command that cannot be found is an error at start, naming it."""
    with pytest.raises(ValueError, match="no-such-hook-cmd"):
        Reporter(io.StringIO(), exec_argv=["no-such-hook-cmd"], clock=clock_at(0))


def test_exec_runs_without_a_shell(tmp_path: Path) -> None:
    """Shell syntax in report.exec's arguments reaches the program as it is: no shell runs."""
    script = "import sys, os; open(sys.argv[1], 'w').write(repr(sys.argv[2:]))"
    seen = tmp_path / "argv"
    odd = ["$(touch pwned)", "a;b", "*", "'q'"]
    with private_reactor() as reactor:
        argv = [sys.executable, "-c", script, str(seen), *odd]
        reporter = Reporter(io.StringIO(), exec_argv=argv, reactor=reactor, clock=clock_at(0))
        reporter.report(MOVE, 1)
        run_deferred(reactor, reporter.close())
    assert seen.read_text() == repr(odd)
    assert not (Path.cwd() / "pwned").exists()


def test_a_full_sync_difference_says_what_it_found_and_what_was() -> None:
    """A difference line carries found= and the baseline's differing fields as was.*."""
    out = io.StringIO()
    reporter = Reporter(out, "text", clock=clock_at(0))
    reporter.report(WRITE, 9, found=Found.CHANGED, was={"size": "4"}, digest="ab" * 32)
    line = out.getvalue()
    assert line.endswith(f" mtime=1700000000.25 sha256={'ab' * 32} found=changed was.size=4\n")
    out = io.StringIO()
    Reporter(out, "json", clock=clock_at(0)).report(WRITE, 9, found=Found.CREATED)
    obj = json.loads(out.getvalue())
    assert obj["found"] == "created" and "was" not in obj and "sha256" not in obj


def test_summary_lines() -> None:
    """The baseline summary is one text line, or one JSON object with its counts."""
    out = io.StringIO()
    Reporter(out, "text", clock=clock_at(0)).summary("baseline", "3 entries", entries=3)
    assert out.getvalue() == "1970-01-01T00:00:00.000+00:00 baseline: 3 entries\n"
    out = io.StringIO()
    Reporter(out, "json", clock=clock_at(0)).summary("baseline", "3 entries", entries=3)
    assert json.loads(out.getvalue()) == {
        "time": "1970-01-01T00:00:00.000+00:00",
        "event": "baseline",
        "entries": 3,
    }


def test_syslog_lines_reach_the_socket(tmp_path: Path) -> None:
    """With report.syslog, each line goes as a user.info message to the syslog socket."""
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        out = io.StringIO()
        reporter = Reporter(out, syslog=True, syslog_socket=path, clock=clock_at(0))
        reporter.report(MOVE, 3)
        got = server.recv(65536)
    assert got == f"<14>fs_mirror[{os.getpid()}]: {out.getvalue().rstrip()}".encode()


def test_syslog_unreachable_is_refused_at_start(tmp_path: Path) -> None:
    """No syslog listening on the socket: an error at start naming the socket, not silence."""
    missing = tmp_path / "none" / "log"
    with pytest.raises(SyslogUnreachable, match=str(missing)):
        Reporter(io.StringIO(), syslog=True, syslog_socket=str(missing), clock=clock_at(0))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(SyslogUnreachable, match="plain"):
        Reporter(io.StringIO(), syslog=True, syslog_socket=str(plain), clock=clock_at(0))
