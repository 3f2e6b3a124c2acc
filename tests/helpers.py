"""Shared test helpers: waiting on conditions with a deadline, free ports."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes.

    Returns the truthy value; raises AssertionError naming ``message`` on timeout.
    This is the only waiting primitive tests use: never a bare sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """An abstract datagram socket standing in for systemd's NOTIFY_SOCKET: (address, socket)."""
    name = f"mirrord-notify-{os.getpid()}-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield "@" + name, sock


def datagrams_until(sock: socket.socket, prefix: bytes, timeout: float = 60.0) -> list[bytes]:
    """Datagrams until one starting with ``prefix`` arrives (all of them, in order)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not any(d.startswith(prefix) for d in got):
        left = deadline - time.monotonic()
        assert left > 0, f"no {prefix!r} within {timeout}s; got {got!r}"
        sock.settimeout(left)
        got.append(sock.recv(4096))
    return got
