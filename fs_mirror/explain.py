"""Operator sentences for failures whose library wording says little.

A refused TLS handshake reaches fs_mirror as an OpenSSL error list or a
``service_identity`` exception repr; an operator needs to know which key to
fix.  Kept apart from the client so the wording is tested without a network.
"""

from __future__ import annotations

from twisted.python.failure import Failure


def tls_problem(reason: Failure) -> str | None:
    """An operator's sentence for a refused TLS handshake, or None for other failures."""
    kind = type(reason.value)
    module = kind.__module__ or ""
    if module.startswith("service_identity"):
        ids = [getattr(e, "mismatched_id", None) for e in getattr(reason.value, "errors", [])]
        wanted = ", ".join(str(getattr(i, "ip", None) or getattr(i, "hostname", i)) for i in ids)
        return (
            f"mirrord's certificate does not name the host we connected to ({wanted}):"
            " set host= to a name in the certificate's subjectAltName, or reissue it"
        )
    if module.startswith("OpenSSL") and "certificate verify failed" in str(reason.value):
        return (
            "mirrord's certificate was refused (certificate verify failed):"
            " check that tls.ca holds the CA that signed mirrord's tls.cert"
        )
    return None
