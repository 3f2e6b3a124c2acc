"""Absolute paths as bytes, compared by whole components: the few helpers all parts share.

``/a/cache`` never covers ``/a/cache2``; ``/`` covers everything. The watch
tree, the scanner, the journal and the monitor all ask these questions, so
they are answered once, here. Pure.
"""

from __future__ import annotations

from protocol.paths import is_under as is_below  # the one whole-component test of every package

__all__ = ["is_below", "join", "overlaps", "parent_path", "split"]


def split(path: bytes) -> tuple[bytes, bytes]:
    """``/a/b`` -> (``/a``, ``b``); ``/a`` -> (``/``, ``a``); ``/`` -> (``/``, ``b""``)."""
    i = path.rfind(b"/")
    return (path[:i] or b"/"), path[i + 1 :]


def join(parent: bytes, name: bytes) -> bytes:
    """Inverse of :func:`split` for a non-empty ``name``."""
    if parent == b"/":
        return b"/" + name
    return parent + b"/" + name


def parent_path(path: bytes) -> bytes:
    """The directory holding ``path`` (``/`` for ``/`` itself)."""
    return path.rpartition(b"/")[0] or b"/"


def overlaps(a: bytes, b: bytes) -> bool:
    """True when one path is the other or inside it (whole components)."""
    return is_below(a, b) or is_below(b, a)
