"""The ``mirrord -k`` control channel: JSON lines in memory, and over a real unix socket.

Run as a module (``python -m tests.test_control SOCKET``) this file is a control
server with a small handler, serving until stdin closes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from mirrord.control import (
    ControlError,
    ControlFactory,
    format_status,
    jsonable,
    listen_control,
    request,
)
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
SESSION = "5" * 32


class ToyHandler:
    """A daemon stand-in: include/exclude change what status reports."""

    def __init__(self, later=None) -> None:
        self.later = later  # callable(func) -> Deferred, to answer include asynchronously
        self.included: list[bytes] = []
        self.excluded: list[bytes] = []

    def status(self) -> dict:
        return {
            "session": SESSION,
            "head": 7,
            "oldest": 2,
            "watched": 3,
            "polled": [b"/big/\xff"],
            "included": self.included,
            "excluded": self.excluded,
            "clients": [
                {"peer": "10.0.0.2:4000", "state": "parked", "serial": 7, "lag": 0},
                {"peer": "10.0.0.3:4001", "state": "init", "serial": None, "lag": None},
            ],
        }

    def include(self, path: bytes):
        if path == b"/fail":
            raise ValueError("/fail: no such directory")

        def done() -> str:
            self.included.append(path)
            return f"including {os.fsdecode(path)}"

        return done() if self.later is None else self.later(done)

    def exclude(self, path: bytes) -> str:
        self.excluded.append(path)
        return f"excluding {os.fsdecode(path)}"


def connect(handler) -> tuple[object, StringTransport]:
    proto = ControlFactory(handler).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def replies(transport: StringTransport) -> list[dict]:
    data = transport.value()
    transport.clear()
    return [json.loads(line) for line in data.splitlines()]


# -- in memory ---------------------------------------------------------------


def test_status_include_exclude_replies():
    """Each request line gets one JSON reply; bytes paths come back as fsdecoded strings."""
    handler = ToyHandler()
    proto, transport = connect(handler)
    proto.dataReceived(b'{"cmd": "include", "path": "/srv/\\udcff"}\n{"cmd": "status"}\r\n')
    include, status = replies(transport)
    assert include == {"ok": True, "result": "including /srv/\udcff"}
    assert handler.included == [b"/srv/\xff"]
    assert status["ok"] is True
    assert status["head"] == 7
    assert status["included"] == ["/srv/\udcff"]
    assert os.fsencode(status["polled"][0]) == b"/big/\xff"


def test_deferred_answers_keep_request_order():
    """A slow (Deferred) answer is not overtaken by a quick one sent after it."""
    pending: list[tuple[defer.Deferred, object]] = []

    def later(func):
        d = defer.Deferred()
        pending.append((d, func))
        return d

    proto, transport = connect(ToyHandler(later))
    proto.dataReceived(b'{"cmd": "include", "path": "/a"}\n{"cmd": "exclude", "path": "/b"}\n')
    assert transport.value() == b""
    ((d, func),) = pending
    d.callback(func())
    assert [r["result"] for r in replies(transport)] == ["including /a", "excluding /b"]


@pytest.mark.parametrize(
    "line, error",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"cmd": "reboot"}', "unknown command 'reboot'"),
        (b'{"cmd": "include"}', "absolute path"),
        (b'{"cmd": "exclude", "path": "relative/x"}', "absolute path"),
        (b'{"cmd": "include", "path": "/fail"}', "/fail: no such directory"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_requests_get_an_error_reply_and_the_connection_stays(line, error):
    """A bad request or a handler error is answered ok=false with a reason; the next one works."""
    proto, transport = connect(ToyHandler())
    proto.dataReceived(line + b"\n" + b'{"cmd": "status"}\n')
    bad, good = replies(transport)
    assert bad["ok"] is False and error in bad["error"]
    assert good["ok"] is True
    assert not transport.disconnecting


def test_over_long_request_is_refused_and_closed():
    """A request over 64 KiB gets an error and the connection is closed."""
    proto, transport = connect(ToyHandler())
    proto.dataReceived(b"x" * 70000)
    (reply,) = replies(transport)
    assert reply == {"ok": False, "error": "request too long"}
    assert transport.disconnecting


def test_jsonable_decodes_bytes_deeply():
    """Bytes inside dicts, lists and tuples become strings that fsencode back to the bytes."""
    value = jsonable({b"k": [b"/a\xff", (1, None)], "n": {"x": b"y"}})
    assert value == {"k": ["/a\udcff", [1, None]], "n": {"x": "y"}}
    json.dumps(value)


# -- rendering -------------------------------------------------------------------


def test_format_status_shows_everything_an_operator_needs():
    """Status names session, head, oldest, watched, polled, each client with serial and lag."""
    d = {"ok": True, **jsonable(ToyHandler().status())}
    d["clients"][0].update(serial=5, lag=2, bytes_sent=1234)
    text = format_status(d)
    assert SESSION in text
    assert "head serial:      7" in text
    assert "oldest retained:  2" in text
    assert "watched dirs:     3" in text
    assert "polled subtrees:  1" in text and "/big/\udcff" in text
    assert "clients:          2" in text
    assert "10.0.0.2:4000  parked  serial 5  lag 2  sent 1234 bytes" in text
    assert "10.0.0.3:4001  init  serial -  lag -" in text


def test_format_status_computes_missing_lag_and_renders_errors():
    """Lag is head minus serial when the reply lacks it; an error reply renders as its message."""
    text = format_status({"ok": True, "head": 10, "polled": 0, "clients": [{"serial": 4}]})
    assert "lag 6" in text
    assert format_status({"ok": False, "error": "boom"}) == "error: boom"


def test_format_status_counts_polled_and_shows_overflows_and_lag_in_seconds():
    """A polled count of 0 prints 0 (not an empty list); overflows and lag_seconds show."""
    text = format_status(
        {"ok": True, "head": 9, "polled": 0, "overflows": 3,
         "clients": [{"peer": "p:1", "serial": 4, "lag": 5, "lag_seconds": 12.5}]}
    )  # fmt: skip
    assert "polled subtrees:  0" in text and "[]" not in text
    assert "overflows:        3" in text
    assert "serial 4  lag 5 (12.5s)" in text


# -- over a real unix socket ---------------------------------------------------------


def serve(path: str) -> None:
    """The subprocess: a control socket at ``path`` until stdin closes."""
    from twisted.internet import reactor, stdio, task
    from twisted.internet.protocol import Protocol

    class StopOnEof(Protocol):
        def connectionLost(self, reason: object = None) -> None:  # noqa: N802
            reactor.stop()

    handler = ToyHandler(later=lambda func: task.deferLater(reactor, 0, func))
    listen_control(ControlFactory(handler), reactor, path)
    stdio.StandardIO(StopOnEof())
    reactor.run()


@pytest.fixture
def control_socket(tmp_path):
    path = str(tmp_path / "mirrord.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # a socket file left behind by a crashed daemon
    stale.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.test_control", path], cwd=ROOT, stdin=subprocess.PIPE
    )
    try:
        wait_for(lambda: _answers(path) or proc.poll() is not None, 20, message="control socket")
        assert proc.poll() is None, "control server exited early"
        yield path
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _answers(path: str) -> bool:
    try:
        return request(path, "status", timeout=1)["ok"]
    except OSError:
        return False


def test_round_trip_over_unix_socket(control_socket):
    """status, include and exclude work over the real socket, which is mode 0600."""
    assert stat.S_IMODE(os.stat(control_socket).st_mode) == 0o600
    before = request(control_socket, "status")
    assert before["session"] == SESSION and before["included"] == []
    reply = request(control_socket, "include", b"/srv/\xff")
    assert reply == {"ok": True, "result": "including /srv/\udcff"}
    assert request(control_socket, "exclude", "/srv/cache")["ok"] is True
    after = request(control_socket, "status")
    assert [os.fsencode(p) for p in after["included"]] == [b"/srv/\xff"]
    assert after["excluded"] == ["/srv/cache"]
    failed = request(control_socket, "include", "/fail")
    assert failed["ok"] is False and "no such directory" in failed["error"]
    assert "clients:          2" in format_status(after)


def test_second_daemon_on_a_live_socket_is_refused(control_socket):
    """Listening where a live daemon already answers raises instead of stealing its socket."""
    with pytest.raises(ControlError, match="already running"):
        listen_control(ControlFactory(ToyHandler()), None, control_socket)
    assert request(control_socket, "status")["ok"] is True


def test_request_without_daemon_raises_the_socket_error(tmp_path):
    """A request where no daemon listens raises the OSError saying why (missing, refused)."""
    with pytest.raises(FileNotFoundError):
        request(str(tmp_path / "nothing.sock"), "status")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    with pytest.raises(ConnectionRefusedError):
        request(str(tmp_path / "stale.sock"), "status")


def test_silent_daemon_times_out_with_control_error(tmp_path):
    """A daemon that accepts but never answers gives ControlError after the timeout."""
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        with pytest.raises(ControlError, match="no answer within 0.2s"):
            request(path, "status", timeout=0.2)


if __name__ == "__main__":
    serve(sys.argv[1])
