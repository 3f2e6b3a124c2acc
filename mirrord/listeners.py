"""mirrord's listening ports as services: the protocol port, the control socket, FTP.

Each is a ``Listener``: started, it listens (a port, or a Deferred of one,
in ``listening``), and stopped, it stops listening; the service tree starts
them only once the boot scan is done.  The protocol port also closes its
clients when it stops, before the store they read from closes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints, protocol
from twisted.logger import Logger

from cmdconfig import Config
from cmdconfig.tls import twisted_ssl
from mirrord.clients import MirrorServerFactory
from mirrord.steering import Parts

__all__ = ["Listener", "ProtocolPort", "listen", "tls_options"]

log = Logger(namespace="mirrord")


def tls_options(cert_file: str, key_file: str) -> Any:
    """Server TLS options from a PEM certificate (chain allowed) and a PEM key.

    Twisted's TLS module is loaded here, not at import: TLS is an extra.
    """
    ssl = twisted_ssl("tls.cert")
    pem = Path(cert_file).read_bytes() + b"\n" + Path(key_file).read_bytes()
    return ssl.PrivateCertificate.loadPEM(pem).options()


def listen(
    factory: protocol.Factory,
    reactor: Any,
    port: int,
    bind: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> defer.Deferred[Any]:
    """Listen on ``bind:port`` (TLS only when both cert and key are given)."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls.cert and tls.key must be set together")
    endpoint: Any
    if tls_cert and tls_key:
        options = tls_options(tls_cert, tls_key)
        endpoint = endpoints.SSL4ServerEndpoint(reactor, port, options, interface=bind)
    elif ":" in bind:
        endpoint = endpoints.TCP6ServerEndpoint(reactor, port, interface=bind)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface=bind)
    return endpoint.listen(factory)


class Listener(Service):
    """Listens with ``listen()`` when started; ``said`` is logged once it listens."""

    def __init__(self, name: str, listen: Callable[[], Any], said: str = "", **fields: Any) -> None:
        self.setName(name)
        self._listen, self._said, self._fields = listen, said, fields
        self.port: Any = None
        self.listening: defer.Deferred[Any] = defer.Deferred()

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.listening = defer.maybeDeferred(self._listen).addCallback(self._up)

    def _up(self, port: Any) -> Any:
        self.port = port
        if self._said:
            log.info(self._said, **self._fields)
        return port

    def stopService(self) -> defer.Deferred[Any] | None:  # noqa: N802
        super().stopService()
        port, self.port = self.port, None
        return None if port is None else defer.maybeDeferred(port.stopListening)


class ProtocolPort(Listener):
    """The line protocol on ``bind:port``, serving the journal service's store and journal."""

    def __init__(self, config: Config, parts: Parts, reactor: Any) -> None:
        super().__init__(
            "protocol",
            self._open,
            "serving on {bind}:{port}",
            bind=config["bind"],
            port=config["port"],
        )
        self.config, self.parts, self.reactor = config, parts, reactor
        self.factory: MirrorServerFactory | None = None
        self.status: Callable[[str], None] | None = None  # STATUS= for systemd, if wanted

    def _open(self) -> defer.Deferred[Any]:
        cfg = self.config
        secret = cfg.secret("auth.secret-from") if hasattr(cfg, "secret") else None
        self.factory = MirrorServerFactory(
            self.parts.store,
            self.parts.journal,
            batch=cfg["batch"],
            timeout=cfg["timeout"],
            max_clients=cfg["max-clients"],
            secret=secret,
            reactor=self.reactor,
            progress_every=cfg.get("progress.interval", 5.0),
            status=self.status,
        )
        return listen(
            self.factory,
            self.reactor,
            cfg["port"],
            cfg["bind"],
            tls_cert=cfg["tls.cert"] or None,
            tls_key=cfg["tls.key"] or None,
        )

    def clients(self) -> list[dict[str, Any]]:
        """One status dict per connected client."""
        return [] if self.factory is None else self.factory.clients()

    def stopService(self) -> defer.Deferred[Any] | None:  # noqa: N802
        d = super().stopService()
        if self.factory is not None:
            self.factory.stop()  # no more clients: nothing may read the store after
        return d
