"""The tripwire's syslog output: report lines sent to the local syslog socket.

The C library's ``syslog(3)`` says nothing when no syslog daemon listens
(no ``/dev/log`` in a container, a stopped rsyslog): a tripwire that would
silently not alert.  So the socket is opened here, at start, and a socket
that cannot be reached stops fs_mirror with an error naming the key; one
that goes away later (syslog restarted) is reconnected, and a line that
still cannot be sent is said in fs_mirror's own log.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.logger import Logger

log = Logger()

DEFAULT_SOCKET = "/dev/log"
_USER_INFO = 8 * 1 + 6  # facility user (1), severity info (6)


class SyslogUnreachable(Exception):
    """No syslog listens on the socket; the message says which and why."""


class SyslogSocket:
    """Datagrams (or a stream, as rsyslog may offer) to the syslog socket ``path``."""

    def __init__(self, path: str = DEFAULT_SOCKET, ident: str = "fs_mirror") -> None:
        self.path, self.ident = path, ident
        self._sock: socket.socket | None = None
        self._stream = False
        self._failing = False
        try:
            self._connect()
        except OSError as e:
            raise SyslogUnreachable(f"cannot reach syslog at {path}: {e.strerror or e}") from None

    def _connect(self) -> None:
        self.close()
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            try:
                sock.connect(self.path)
            except OSError as e:
                sock.close()
                if kind == socket.SOCK_DGRAM and e.errno == errno.EPROTOTYPE:  # a stream socket
                    continue
                raise
            self._sock, self._stream = sock, kind == socket.SOCK_STREAM
            return

    def message(self, line: str) -> bytes:
        """One RFC 3164-style message as the local syslog daemons accept it."""
        data = f"<{_USER_INFO}>{self.ident}[{os.getpid()}]: {line}".encode("utf-8", "replace")
        return data + b"\0" if self._stream else data

    def send(self, line: str) -> None:
        for attempt in (1, 2):
            try:
                if self._sock is None:
                    self._connect()
                assert self._sock is not None
                self._sock.sendall(self.message(line))
            except OSError as e:
                self.close()
                if attempt == 2:
                    if not self._failing:
                        log.error(
                            "report.syslog: cannot send to {path}: {why}; report lines still"
                            " go to the output",
                            path=self.path,
                            why=e.strerror or e,
                        )
                    self._failing = True
                continue
            if self._failing:
                log.info("report.syslog: {path} reachable again", path=self.path)
                self._failing = False
            return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
