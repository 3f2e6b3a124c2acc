"""Quoting of paths on the wire.

Paths are bytes and may be any bytes, so the few that would break a line
(control bytes, DEL) and the escape character itself are written as ``%XX``;
everything else, UTF-8 or not, is sent as it is so names stay readable and
round-trip byte for byte. A TAB is a control byte, so it never occurs inside
a field.

``is_under`` is the one "is this path inside that tree" test of every
package: paths are compared by whole components, so ``/a/cache`` never
covers ``/a/cache2``.
"""

from __future__ import annotations

import re

from protocol.errors import ProtocolError

__all__ = ["is_under", "quote", "unquote"]

_NEEDS_QUOTING = re.compile(rb"[\x00-\x1f\x7f%]")
_ESCAPES = {bytes([b]): b"%%%02X" % b for b in [*range(0x20), 0x7F, ord("%")]}
_HEX = b"0123456789abcdefABCDEF"
# Every two-digit hex spelling (upper, lower or mixed case) -> the byte it names.
_UNESCAPES = {bytes([hi, lo]): bytes([int(bytes([hi, lo]), 16)]) for hi in _HEX for lo in _HEX}


def _escape(match: re.Match[bytes]) -> bytes:
    return _ESCAPES[match.group()]


def quote(path: bytes) -> bytes:
    """Return ``path`` with 0x00-0x1F, 0x7F and ``%`` written as upper-case ``%XX``."""
    if _NEEDS_QUOTING.search(path) is None:
        return bytes(path)
    return _NEEDS_QUOTING.sub(_escape, path)


def unquote(field: bytes) -> bytes:
    """Undo ``quote``; accepts either hex case, raises ``ProtocolError`` on a bad escape."""
    if b"%" not in field:
        return bytes(field)
    first, *rest = field.split(b"%")
    out = [first]
    for part in rest:
        byte = _UNESCAPES.get(part[:2])
        if byte is None:
            raise ProtocolError(message=f"bad %-escape in field {field[:80]!r}")
        out.append(byte)
        out.append(part[2:])
    return b"".join(out)


def is_under(path: bytes, top: bytes) -> bool:
    """True if ``path`` is ``top`` or inside it, by whole components (``/`` holds every path).

    Both are absolute paths without a trailing slash; strictly inside is
    ``path != top and is_under(path, top)``.
    """
    if top == b"/":
        return path.startswith(b"/")
    return path.startswith(top) and (len(path) == len(top) or path[len(top)] == 0x2F)
