"""Confinement: the one way a worker path becomes a path under the datadir.

Whatever a server sends, every path goes through ``Confinement.local``
before anything touches the disk: only absolute paths of plain components,
never our own state files, never through a symlink that already exists in
the mirror (each existing parent is ``lstat``-ed; the server can make
symlinks, so it could otherwise aim later writes anywhere).  Such a path
means a broken or hostile server (``HostilePath``); a worker path that merely
collides with our own state files is a ``ReservedPath``.  Kept apart from
``fs_mirror.apply`` so the rule that keeps fs_mirror inside its datadir is
one small module that can be read, and tested, whole.
"""

from __future__ import annotations

import os
import stat

from fs_mirror.nodes import lstat, show
from fs_mirror.state import RESERVED

DIRS_KEPT = 4096  # bounded: directories known real, within one batch


class HostilePath(ValueError):
    """A path no honest server sends (it would leave the mirror): refused and skipped."""


class ReservedPath(ValueError):
    """A worker path that collides with fs_mirror's own files: skipped, batch goes on."""


class Confinement:
    """Maps worker paths under ``datadir`` and makes their parents, never leaving it.

    Directories ``lstat``-ed (or made) and found real are remembered so each
    record need not ``lstat`` every parent again.  Whoever makes a symlink,
    or removes or moves a directory, under the datadir must call
    ``forget_tree`` for that path afterwards (or ``forget``).
    """

    def __init__(self, datadir: bytes) -> None:
        self.datadir = datadir
        self._dirs: set[bytes] = set()
        # path -> the directories learnt below it, one level down (a path may
        # have none of its own learnt): what forget_tree must drop with it.
        self._below: dict[bytes, set[bytes]] = {}

    def forget(self) -> None:
        """Trust nothing learnt so far (a directory may now be a symlink, or gone)."""
        self._dirs.clear()
        self._below.clear()

    def forget_tree(self, local: bytes) -> None:
        """Trust nothing learnt at ``local`` or below it; what is above still holds.

        A catch-up made of deletes, moves and symlinks used to forget every
        directory after each of them, and ``lstat`` every parent of every
        path again (six calls a record at a modest depth).
        """
        stack = [local]
        while stack:
            path = stack.pop()
            self._dirs.discard(path)
            stack.extend(self._below.pop(path, ()))

    def local(self, path: bytes) -> bytes:
        """The local path for worker ``path``, or HostilePath/ReservedPath when it is unsafe."""
        if not isinstance(path, bytes) or not path.startswith(b"/"):
            raise HostilePath("not an absolute path")
        if b"\0" in path:
            raise HostilePath("NUL byte in path")
        parts = path[1:].split(b"/")
        if parts == [b""]:
            raise HostilePath("the mirror root itself")
        for part in parts:
            if part in (b"", b".", b".."):
                raise HostilePath(f"component {part.decode()!r} in path")
        if parts[0] in RESERVED:
            raise ReservedPath("collides with fs_mirror's own state files")
        current = self.datadir
        for part in parts[:-1]:
            current += b"/" + part
            if current in self._dirs:
                continue
            st = lstat(current)
            if st is None:
                break
            if stat.S_ISLNK(st.st_mode):
                raise HostilePath(f"parent {show(current)!r} is a symlink in the mirror")
            if not stat.S_ISDIR(st.st_mode):
                break  # a file in the way: the record replaces it, nothing to traverse
            self._known_dir(current)
        return self.datadir + path

    def _known_dir(self, local: bytes) -> None:
        if len(self._dirs) >= DIRS_KEPT:
            self.forget()
        self._dirs.add(local)
        child, parent = local, os.path.dirname(local)
        while len(parent) > len(self.datadir):  # link it under every ancestor
            below = self._below.setdefault(parent, set())
            if child in below:
                break
            below.add(child)
            child, parent = parent, os.path.dirname(parent)

    def make_parents(self, local: bytes) -> list[bytes]:
        """Create missing parents of ``local`` (confined already).

        A file in the way becomes a directory; returns the worker paths of
        the files so removed, whose pending fetches are moot.
        """
        parent = os.path.dirname(local)
        if parent in self._dirs:
            return []
        st = lstat(parent)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return []  # local() saw no symlink above, so the whole chain is real
        replaced: list[bytes] = []
        current = self.datadir
        for part in parent[len(self.datadir) + 1 :].split(b"/"):
            current += b"/" + part
            st = lstat(current)
            if st is not None and stat.S_ISDIR(st.st_mode):
                continue
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise HostilePath(f"parent {show(current)!r} is a symlink in the mirror")
            if st is not None:
                os.unlink(current)  # the worker has a directory here now
                replaced.append(current[len(self.datadir) :])
            os.mkdir(current, 0o755)
            self._known_dir(current)
        return replaced
