"""Who is connected to the protocol port: the factory, ``max-clients``, and their status.

The factory is what outlives one connection: the store and journal the
clients are served from, the settings they share, and the set of live
connections, which bounds how many there may be (contract 2.3: the one past
``max-clients`` gets ``BUSY`` and a close), closes them all before the store
closes, and answers ``-k status`` for each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger

from mirrord.server import MirrorProtocol, peer_text
from protocol.messages import BUSY, encode_line

INIT_CHUNK = 512  # snapshot entries written per reactor turn (~40 KB)


class _Busy(protocol.Protocol):
    """The connection past ``max-clients``: one ``BUSY`` line, then a close."""

    transport: Any  # an ITCPTransport (zope interfaces are opaque to mypy)

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(encode_line(BUSY))
        self.transport.loseConnection()


class MirrorServerFactory(protocol.Factory):
    """Serves one store and its journal to any number of clients."""

    noisy = False  # our own log lines say when we listen and stop
    protocol = MirrorProtocol  # type: ignore[assignment]  # its factory is this class

    def __init__(
        self,
        store: Any,
        journal: Any,
        *,
        batch: int = 1024,
        timeout: float = 3600.0,
        max_clients: int = 64,
        secret: bytes | None = None,
        reactor: Any,
        log: Logger | None = None,
        chunk: int = INIT_CHUNK,
        progress_every: float = 5.0,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.journal, self.reactor = store, journal, reactor
        self.batch, self.timeout, self.secret, self.chunk = batch, timeout, secret, chunk
        self.max_clients = max_clients
        # an INIT's progress line every ``progress_every`` s, also told to ``status``
        self.progress_every, self.status = progress_every, status
        self.log = log if log is not None else Logger()
        self._clients: dict[int, MirrorProtocol] = {}

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        if len(self._clients) >= self.max_clients:
            self.log.warn(
                "client {peer} refused: {n} clients connected (max-clients)",
                peer=peer_text(addr),
                n=len(self._clients),
            )
            return _Busy()
        return super().buildProtocol(addr)

    def connected(self, proto: MirrorProtocol) -> None:
        self._clients[id(proto)] = proto

    def disconnected(self, proto: MirrorProtocol) -> None:
        self._clients.pop(id(proto), None)

    def stop(self) -> None:
        """Close every client before the store closes: nothing may read it after."""
        for proto in list(self._clients.values()):
            proto._close()

    def clients(self) -> list[dict[str, Any]]:
        """One status dict per connected client (peer, state, serial, lag, bytes_sent)."""
        return [p.status() for p in self._clients.values()]
