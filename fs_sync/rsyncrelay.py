"""A loopback relay between our rsync client and the daemon that acknowledges at once.

An rsync daemon writes its side of a run in small pieces. Unless its
rsyncd.conf says `socket options = TCP_NODELAY`, Nagle holds each piece until
the previous one is acknowledged, and the rsync client, having nothing to
send meanwhile, delays that acknowledgement by Linux's 40 ms. Two such stalls
per run made one small change take ~90 ms instead of ~10 ms, whatever the
client's own `--sockopts`. The relay owns the daemon-facing socket and sets
`TCP_QUICKACK` after every read, so the daemon never waits; rsync connects to
the relay on loopback, with `TCP_NODELAY` on both of the relay's sockets.

The daemon sees the same peer as it would without the relay (this host), and
rsync's challenge-response authentication passes through untouched, so a
local user who connects to the relay's port gains nothing they could not get
by connecting to the daemon directly. The relay accepts while the fetcher
lives, at most `MAX_CONNECTIONS` at a time; each direction of each
connection is copied by its own thread, so a full buffer one way never
blocks the other way.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["MAX_CONNECTIONS", "AckingRelay"]

MAX_CONNECTIONS = 4
_CHUNK = 256 * 1024
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class AckingRelay:
    """Relay every connection made to `port` (on 127.0.0.1) to the daemon at host:port."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.upstream_port, self.timeout = host, port, timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(MAX_CONNECTIONS)
        self.port: int = self._listener.getsockname()[1]
        self._dialled: socket.socket | None = None
        self._lock = threading.Lock()
        self._open = 0
        self._closed = False
        threading.Thread(target=self._accept_loop, name="fs_sync-rsync-relay", daemon=True).start()

    def dial(self) -> None:
        """Connect to the daemon now, for the next rsync run to use.

        Raises OSError (refused, unreachable, timed out) before any rsync
        process is started, so the caller can say plainly why.
        """
        upstream = socket.create_connection((self.host, self.upstream_port), self.timeout)
        upstream.settimeout(None)
        _nodelay(upstream)
        with self._lock:
            stale, self._dialled = self._dialled, upstream
        if stale is not None:
            stale.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            stale, self._dialled = self._dialled, None
        if stale is not None:
            stale.close()

    # -- relay threads --

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            if self._open >= MAX_CONNECTIONS:
                client.close()
                return
            self._open += 1
            upstream, self._dialled = self._dialled, None
        try:
            if upstream is None:
                upstream = socket.create_connection((self.host, self.upstream_port), self.timeout)
                upstream.settimeout(None)
                _nodelay(upstream)
            _nodelay(client)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            # rsync is done sending; a daemon that has not closed within the
            # timeout after that is cut off, so no relay thread waits forever.
            back.join(self.timeout)
            if back.is_alive():
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_RDWR)
                back.join()
        except OSError:
            pass  # the daemon went away: rsync sees the closed connection and says so
        finally:
            client.close()
            if upstream is not None:
                upstream.close()
            with self._lock:
                self._open -= 1


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until its end, then pass the end on (a half close).

    A reset or any other error shuts both sockets both ways, so the thread
    copying the other direction does not wait forever.
    """
    try:
        while True:
            data = source.recv(_CHUNK)
            if _QUICKACK is not None:
                source.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
