"""cmdconfig.tls.channel_binding: RFC 9266's tls-exporter value of a connection, b"" on TCP."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from cmdconfig.tls import channel_binding


class Seen(protocol.Protocol):
    """Keeps its side's binding once the peer's first bytes arrive (the handshake is done)."""

    def __init__(self) -> None:
        self.binding: bytes | None = None

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(b"hello\n")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.binding is None:
            self.binding = channel_binding(self.transport)


def tls_pair(tmp_path: Path) -> tuple[Seen, Seen, Any]:
    """A client and a server application protocol over TLS in memory."""
    ssl = pytest.importorskip("twisted.internet.ssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + [
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ]
        + ["-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    server_options = ssl.PrivateCertificate.loadPEM(key.read_bytes() + cert.read_bytes()).options()
    trust = ssl.Certificate.loadPEM(cert.read_bytes())
    client_options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
    server_app, client_app = Seen(), Seen()
    clock = Clock()  # TLS transports coalesce small writes until the clock moves
    server_factory = TLSMemoryBIOFactory(
        server_options, False, protocol.Factory.forProtocol(lambda: server_app), clock
    )
    client_factory = TLSMemoryBIOFactory(
        client_options, True, protocol.Factory.forProtocol(lambda: client_app), clock
    )
    server, client, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None)
    )
    for _ in range(100):  # the coalesced writes, then what they cause
        if not clock.getDelayedCalls():
            break
        clock.advance(0)
        pump.flush()
    return server_app, client_app, server


def test_plain_tcp_has_an_empty_binding() -> None:
    """Without TLS the binding is empty, as contract 2.1 says."""
    assert channel_binding(StringTransport()) == b""


def test_both_ends_of_a_tls_connection_agree_and_connections_differ(tmp_path: Path) -> None:
    """Over TLS both ends get the same 32 bytes, the exporter with RFC 9266's label and
    empty context; another connection gets other bytes (what defeats a relay)."""
    server, client, wrapped = tls_pair(tmp_path)
    assert server.binding is not None and len(server.binding) == 32
    assert server.binding == client.binding
    handle = wrapped.getHandle()
    assert server.binding == handle.export_keying_material(b"EXPORTER-Channel-Binding", 32, b"")
    other, _, _ = tls_pair(tmp_path)
    assert other.binding != server.binding
