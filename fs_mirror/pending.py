"""The FWRITEs of one batch that are still to be fetched, kept in step with its records.

File contents are not fetched inline: each FWRITE path is noted here, later
records of the same batch move it (MOVE), drop it (DELETE, SYMLINK,
CREATE) or add to its metadata (ATTRIB), and the applier hands what is left
to the fetcher once, at the end of the batch.  Some entries only *guess*
that the worker has a file there (the destination of a MOVE whose source
the mirror lacks): the fetch must then never remove a directory there.

Every ancestor of a path added in the batch is remembered (a superset of the
live ones), so the O(pending) scans below run only for paths that may have
pending children: an FWRITE-only INIT chunk stays linear.
"""

from __future__ import annotations

from fs_mirror.nodes import merge
from protocol.paths import is_under
from protocol.records import Meta


class Pending:
    """Worker path -> metadata to set once fetched, plus which entries are guesses."""

    def __init__(self) -> None:
        self._meta: dict[bytes, Meta] = {}
        self._guessed: set[bytes] = set()
        self._parents: set[bytes] = set()

    def __contains__(self, path: object) -> bool:
        return path in self._meta

    def add(self, path: bytes, meta: Meta, *, guessed: bool = False) -> None:
        """Fetch ``path`` at the batch's end (replacing what was pending there)."""
        self._meta[path] = meta
        if guessed:
            self._guessed.add(path)
        else:
            self._guessed.discard(path)
        parent = path.rpartition(b"/")[0]
        while parent and parent not in self._parents:
            self._parents.add(parent)
            parent = parent.rpartition(b"/")[0]

    def merge(self, path: bytes, meta: Meta) -> bool:
        """Add ``meta``'s fields to ``path``'s if it is pending; True if it was."""
        if path not in self._meta:
            return False
        self._meta[path] = merge(self._meta[path], meta)
        return True

    def discard(self, path: bytes) -> None:
        """Forget the pending fetch of ``path`` itself."""
        self._meta.pop(path, None)
        self._guessed.discard(path)

    def drop(self, path: bytes) -> None:
        """Forget pending fetches of ``path`` and everything under it."""
        self.discard(path)
        for key in self._under(path):
            self.discard(key)

    def move(self, src: bytes, dst: bytes) -> bool:
        """Re-key pending fetches at or under ``src`` to ``dst``; True if ``src`` was one."""
        keys = ([src] if src in self._meta else []) + self._under(src)
        moved = [(key, self._meta.pop(key), key in self._guessed) for key in keys]
        self.drop(dst)
        for key, meta, guessed in moved:
            self._guessed.discard(key)
            self.add(dst + key[len(src) :], meta, guessed=guessed)
        return src in keys

    def take(self) -> tuple[dict[bytes, Meta], set[bytes]]:
        """Everything pending and the guessed subset; afterwards nothing is pending."""
        taken = self._meta, self._guessed
        self.clear()
        return taken

    def clear(self) -> None:
        self._meta, self._guessed = {}, set()
        self._parents.clear()

    def _under(self, path: bytes) -> list[bytes]:
        if path not in self._parents:
            return []
        return [k for k in self._meta if k != path and is_under(k, path)]
