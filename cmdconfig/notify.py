"""systemd's service notifications (``Type=notify``), without libsystemd.

With ``NOTIFY_SOCKET`` set, the service manager waits for a datagram such
as ``READY=1`` on that unix socket: a path, or an abstract name written
with a leading ``@``.  Without it nothing is sent, so a daemon run by hand
or under another supervisor behaves as before. ``STOPPING=1`` says a clean
stop has begun; with ``WatchdogSec=`` systemd sets ``WATCHDOG_USEC`` and
restarts a daemon that does not send ``WATCHDOG=1`` within it: the
:class:`Watchdog` service sends it at half that period from the reactor,
so a wedged reactor is what gets caught.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger

__all__ = ["Watchdog", "notify", "notify_ready", "notify_stopping", "tell", "watchdog_period"]


def notify(message: bytes, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to ``$NOTIFY_SOCKET``; False when it is not set.

    Raises ``OSError`` when the socket is there but cannot be reached, or is
    of a kind this does not speak (systemd's ``vsock:``): the caller decides
    whether that is worth a warning.
    """
    where = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not where:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    if not address.startswith(("/", "\0")):
        raise OSError(f"NOTIFY_SOCKET={where}: not a unix socket path or @name")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message, address)
    return True


def notify_ready(environ: Mapping[str, str] | None = None) -> bool:
    """Tell the service manager the daemon serves (``READY=1``)."""
    return notify(b"READY=1", environ)


def tell(message: bytes, log: Logger) -> None:
    """``notify(message)`` for a daemon: a manager it cannot reach is a warning, not a failure."""
    try:
        notify(message)
    except OSError as e:
        log.warn("cannot tell systemd {message}: {error}", message=message.decode(), error=e)


def notify_stopping(environ: Mapping[str, str] | None = None) -> bool:
    """Tell the service manager a clean stop has begun (``STOPPING=1``)."""
    return notify(b"STOPPING=1", environ)


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), None when not asked.

    ``WATCHDOG_PID``, when set, names the process that is meant: another
    one (a child that inherited the environment) sends nothing.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or "0")
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2e6


class Watchdog(Service):
    """Sends ``WATCHDOG=1`` every :func:`watchdog_period` seconds while it runs."""

    def __init__(self, reactor: Any, environ: Mapping[str, str] | None = None) -> None:
        self.name = "watchdog"  # type: ignore[assignment]  # Service types it as None
        self.reactor, self.environ = reactor, environ
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's own, untyped
        period = watchdog_period(self.environ)
        if period is not None:
            self._loop = task.LoopingCall(self._ping)
            self._loop.clock = self.reactor
            self._loop.start(period, now=True)

    def _ping(self) -> None:
        try:
            notify(b"WATCHDOG=1", self.environ)
        except OSError:
            pass  # the manager is gone or busy: it restarts us if it cares

    def stopService(self) -> None:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's own, untyped
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
