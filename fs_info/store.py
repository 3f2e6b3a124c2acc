"""The identity list files: ``DATADIR/IDENTITY/.t_files`` and ``.x_files``.

One absolute path a line, raw bytes (a name need not be UTF-8), so a path
containing a newline cannot be stored and is refused.  Each file is written
to a sibling temporary file, fsynced and renamed over the old one, so mirrord
never reads a half-written list.  Reading tolerates blank lines and ``#``
comments (paths are absolute, so no path starts with ``#``).

The files are written by ``cmdconfig.atomic.replace_file``, the one writer
of every state file: fs_info's command already stands on cmdconfig, so the
identity store uses it too rather than keep a copy of its own.
"""

from __future__ import annotations

import os
import re

from cmdconfig.atomic import replace_file
from fs_info.identity import Identity, normalize

__all__ = ["IdentityStoreError", "check_name", "exists", "load", "names", "save"]

INCLUDES = b".t_files"
EXCLUDES = b".x_files"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")


class IdentityStoreError(ValueError):
    """A bad identity name or an unreadable list file line."""


def check_name(name: str) -> str:
    """An identity name must be one safe path component (``system``, ``www-1``)."""
    if not _NAME.fullmatch(name) or len(name) > 255:
        raise IdentityStoreError(
            f"bad identity name {name!r}: use letters, digits, '_', '.', '@', '+' or '-', "
            "not starting with '.' or '-'"
        )
    return name


def _dir(datadir: str | bytes, name: str) -> bytes:
    return os.path.join(os.fsencode(datadir), os.fsencode(check_name(name)))


def exists(datadir: str | bytes, name: str) -> bool:
    """True if the identity has a list file."""
    d = _dir(datadir, name)
    return any(os.path.exists(os.path.join(d, f)) for f in (INCLUDES, EXCLUDES))


def names(datadir: str | bytes) -> list[str]:
    """The identities present in ``datadir``, sorted."""
    try:
        entries = sorted(os.listdir(os.fsdecode(datadir)))
    except FileNotFoundError:
        return []
    return [n for n in entries if _NAME.fullmatch(n) and exists(datadir, n)]


def _read(path: bytes) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    paths = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip() or line.startswith(b"#"):
            continue
        try:
            paths.append(normalize(line))
        except ValueError as e:
            raise IdentityStoreError(f"{os.fsdecode(path)}:{number}: {e}") from None
    return paths


def load(datadir: str | bytes, name: str) -> Identity:
    """The identity stored in ``datadir``; a missing one is empty (see ``exists``)."""
    d = _dir(datadir, name)
    return Identity(_read(os.path.join(d, INCLUDES)), _read(os.path.join(d, EXCLUDES)))


def save(datadir: str | bytes, name: str, identity: Identity) -> None:
    """Write both list files atomically (sorted), creating the directories."""
    for path in (*identity.includes, *identity.excludes):
        if b"\n" in path:
            raise IdentityStoreError(f"cannot store a path containing a newline: {path!r}")
    d = _dir(datadir, name)
    os.makedirs(d, exist_ok=True)
    for list_name, paths in ((INCLUDES, identity.includes), (EXCLUDES, identity.excludes)):
        data = b"".join(path + b"\n" for path in sorted(paths))
        replace_file(os.path.join(d, list_name), data, 0o644)
