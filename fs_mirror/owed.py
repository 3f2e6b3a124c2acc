"""Files whose content the mirror still owes: fetched too late, or refused.

An FWRITE names a file as mirrord saw it; by the time the backend fetches it
the file may already be gone under that name (renamed with its directory,
saved over by an editor), or the backend may refuse it.  The mirror then
holds an old content, or none, under a path the worker's log will rename or
delete later.  Forgetting that is how a directory filled and renamed at once
arrived empty, and how a renamed directory kept old contents for good.

So every such path is *owed* until a later record settles it: a new FWRITE,
CREATE or SYMLINK of it, a DELETE of it or of an ancestor, or a MOVE of it
or of an ancestor, which turns the debt into a fetch of the new name.  A debt
never settled costs one needless fetch at most, so the set errs on keeping.

The set survives a crash: it is saved (``save``, a temporary file renamed
over the old one) before the serial that depends on it, so a replay after a
kill -9 finds it again.  It is bounded: past ``limit`` paths the mirror no
longer knows what it owes and asks for a full resync (``resync``), kept in
the same file until an INIT has run.
"""

from __future__ import annotations

from collections.abc import Iterator

from cmdconfig.atomic import replace_file
from protocol.errors import ProtocolError
from protocol.paths import is_under, quote, unquote
from protocol.records import Meta

LIMIT = 65536
OWED_NAME = b"owed"  # in fs_mirror's staging directory (fs_mirror.state.STAGING_NAME)
_RESYNC = b"RESYNC"


class Owed:
    """Worker paths (bytes) the mirror owes a fetch of, with their last metadata."""

    def __init__(self, path: bytes | None = None, limit: int = LIMIT) -> None:
        self.path = path  # where it is saved; None keeps it in memory only
        self.limit = limit
        self._owed: dict[bytes, Meta] = {}
        self._ancestors: set[bytes] = set()  # a superset of the owed paths' ancestors
        self.resync = False  # too much was owed, or a tree cannot be fetched: INIT next
        self._changed = False
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._owed)

    def __contains__(self, path: object) -> bool:
        return path in self._owed

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._owed)

    def meta(self, path: bytes) -> Meta:
        return self._owed[path]

    # -- changes ------------------------------------------------------------
    def add(self, path: bytes, meta: Meta) -> None:
        """Owe ``path``; past the limit, owe a full resync instead."""
        if path not in self._owed and len(self._owed) >= self.limit:
            self.need_resync()
            return
        self._owed[path] = meta
        self._changed = True
        parent = path.rpartition(b"/")[0]
        while parent and parent not in self._ancestors:
            self._ancestors.add(parent)
            parent = parent.rpartition(b"/")[0]

    def need_resync(self) -> None:
        if not self.resync:
            self.resync = True
            self._changed = True

    def settle(self, path: bytes) -> None:
        """``path`` itself has a new word from the worker (FWRITE, CREATE)."""
        if self._owed.pop(path, None) is not None:
            self._changed = True
            self._forget_ancestors()

    def settle_tree(self, path: bytes) -> None:
        """``path`` and everything below it is replaced or gone (DELETE, SYMLINK, MOVE over)."""
        for key in self._at_or_under(path):
            del self._owed[key]
            self._changed = True
        self._forget_ancestors()

    def take_tree(self, path: bytes) -> list[tuple[bytes, Meta]]:
        """Remove and return what is owed at or below ``path`` (it moves elsewhere)."""
        taken = [(key, self._owed.pop(key)) for key in self._at_or_under(path)]
        if taken:
            self._changed = True
            self._forget_ancestors()
        return taken

    def resynced(self) -> None:
        """A full INIT begins and names everything again: nothing owed before counts."""
        if self._owed or self.resync:
            self._owed.clear()
            self._ancestors.clear()
            self.resync = False
            self._changed = True

    def _at_or_under(self, path: bytes) -> list[bytes]:
        found = [path] if path in self._owed else []
        if path in self._ancestors:
            found.extend(key for key in self._owed if key != path and is_under(key, path))
        return found

    def _forget_ancestors(self) -> None:
        if not self._owed:
            self._ancestors.clear()

    # -- persistence ----------------------------------------------------------
    def save(self) -> None:
        """Write the set if it changed (before the serial that relies on it is saved)."""
        if self.path is None or not self._changed:
            return
        lines = [_RESYNC] if self.resync else []
        for key, meta in self._owed.items():
            lines.append(b"\t".join([quote(key), *meta.fields()]))
        replace_file(self.path, b"".join(line + b"\n" for line in lines))
        self._changed = False

    def _load(self, path: bytes) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        for line in data.splitlines():
            if line == _RESYNC:
                self.resync = True
                continue
            fields = line.split(b"\t")
            try:
                self.add(unquote(fields[0]), Meta.from_fields(fields[1:]))
            except (ValueError, ProtocolError):
                self.need_resync()  # a damaged file: we no longer know what we owe
        self._changed = False
