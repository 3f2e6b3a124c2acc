"""TLS is an optional extra: load Twisted's TLS support only when asked for.

``twisted.internet.ssl`` imports pyOpenSSL at module level, so a plain
``pip install .`` must never import it on the way to a plain-TCP port.  A
configuration that asks for TLS without the extra is a configuration error
(exit 2) naming the key and the extra to install.

``channel_binding`` is the B of contract 2.1, shared by both daemons so that
they cannot compute it differently: RFC 9266's ``tls-exporter`` value of
the connection, or nothing on plain TCP.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from twisted.internet.interfaces import ISSLTransport

from cmdconfig.errors import ConfigError

EXTRA = "tls"

# RFC 9266 section 2: label "EXPORTER-Channel-Binding", an empty context
# value, 32 bytes.  The context is passed as b"" (present and empty) rather
# than None (absent): the RFC says "empty", and although TLS 1.3 treats the
# two alike, TLS 1.2's exporter (RFC 5705) does not.
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_CONTEXT = b""
EXPORTER_LENGTH = 32


def twisted_ssl(key: str) -> ModuleType:
    """``twisted.internet.ssl``, or ConfigError naming ``key`` and the extra."""
    try:
        from twisted.internet import ssl

        ssl.CertificateOptions  # noqa: B018 - a stub module lacks it without pyOpenSSL
        import service_identity  # noqa: F401 - Twisted checks host names with it
    except ImportError as e:
        raise ConfigError(
            f"{key}: TLS needs the optional extra {EXTRA!r} (pip install 'mirrord[{EXTRA}]'),"
            f" which is not installed ({e})"
        ) from None
    return ssl


def channel_binding(transport: Any) -> bytes:
    """The channel binding of a connection: RFC 9266 ``tls-exporter`` over TLS, else b"".

    ``transport`` is a Twisted transport (opaque to mypy); over TLS its handle
    is the pyOpenSSL connection.  Ask only once the handshake is done: after
    the first line has been received from the peer.
    """
    if not ISSLTransport.providedBy(transport):
        return b""
    tls = transport.getHandle()
    material: bytes = tls.export_keying_material(EXPORTER_LABEL, EXPORTER_LENGTH, EXPORTER_CONTEXT)
    return material
