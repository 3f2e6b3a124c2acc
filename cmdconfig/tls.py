"""TLS is an optional extra: load Twisted's TLS support only when asked for.

``twisted.internet.ssl`` imports pyOpenSSL at module level, so a plain
``pip install .`` must never import it on the way to a plain-TCP port.  A
configuration that asks for TLS without the extra is a configuration error
(exit 2) naming the key and the extra to install.
"""

from __future__ import annotations

from types import ModuleType

from cmdconfig.errors import ConfigError

EXTRA = "tls"


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
