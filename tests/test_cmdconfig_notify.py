"""cmdconfig.notify: READY=1 as one datagram to NOTIFY_SOCKET, over real unix sockets."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from cmdconfig.notify import notify, notify_ready, watchdog_period


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a short path (sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            yield sock, path


def test_ready_is_one_datagram_to_the_socket_path(listener):
    """With NOTIFY_SOCKET=/path, notify_ready sends exactly b'READY=1' there."""
    sock, path = listener
    assert notify_ready({"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1"


def test_abstract_socket_names_start_with_at():
    """NOTIFY_SOCKET=@name is the abstract socket named by a leading NUL byte."""
    name = f"mirrord-test-{os.getpid()}-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert notify(b"STATUS=booting", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"STATUS=booting"


def test_nothing_is_sent_without_notify_socket():
    """Unset or empty NOTIFY_SOCKET: nothing is sent and the answer is False."""
    assert notify_ready({}) is False
    assert notify_ready({"NOTIFY_SOCKET": ""}) is False


@pytest.mark.parametrize("where", ["vsock:2:1234", "relative/path"])
def test_unsupported_addresses_raise_oserror(where):
    """A NOTIFY_SOCKET that is no unix path or @name is an OSError the caller may log."""
    with pytest.raises(OSError, match="NOTIFY_SOCKET"):
        notify_ready({"NOTIFY_SOCKET": where})


def test_a_socket_nobody_listens_on_raises_oserror():
    """A path with no socket behind it raises the socket's own OSError."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, pytest.raises(OSError):
        notify_ready({"NOTIFY_SOCKET": os.path.join(tmp, "gone")})


def test_watchdog_period_is_half_of_watchdog_usec_for_this_process_only() -> None:
    """WATCHDOG_USEC=2000000 pings every second; another WATCHDOG_PID, or none set, never."""
    assert watchdog_period({"WATCHDOG_USEC": "2000000"}) == 1.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_period(mine) == 1.0
    assert watchdog_period({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None
