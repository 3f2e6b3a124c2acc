"""systemd's readiness notification (``Type=notify``), without libsystemd.

With ``NOTIFY_SOCKET`` set, the service manager waits for a datagram such
as ``READY=1`` on that unix socket: a path, or an abstract name written
with a leading ``@``.  Without it nothing is sent, so a daemon run by hand
or under another supervisor behaves as before.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "notify_ready"]


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
