"""After a full INIT: remove from the mirror what the INIT stream did not name.

A full INIT names every path the worker has; mirror entries it never named
are stale (the worker lost them while fs_mirror was away, or the session
changed) and are swept once the stream is applied.  This is kept apart from
``fs_mirror.state`` (the sn file and its locks) because it is a different
job with its own limits: millions of names in an on-disk set rather than in
memory, a sweep that never deletes more than ``init.max-delete`` of the
mirror, and what is below a directory mirrord could not read kept as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator

from fs_mirror.state import RESERVED


class SeenSet:
    """The worker paths an INIT stream named, in an on-disk sqlite set.

    After a full INIT, mirror entries the stream never named are stale (the
    worker lost them while we were away, or the session changed) and are
    swept.  Millions of paths do not fit in memory, so they go to a sqlite
    table in the staging directory (bounded cache, one transaction per
    chunk).  Ancestors are added too, since INIT starts at the include roots
    and never names ``/var`` for ``/var/www``; the DFS order means the last
    path's ancestors are nearly always the next one's, so they are cached.
    """

    def __init__(self, path: bytes) -> None:
        import sqlite3

        for stale in (path, path + b"-journal"):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        self.path = path
        self._db = sqlite3.connect(os.fsdecode(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-16000")  # 16 MB at most
        self._db.execute("CREATE TABLE seen (path BLOB PRIMARY KEY) WITHOUT ROWID")
        self._ancestors: set[bytes] = set()

    def add(self, paths: list[bytes]) -> None:
        """Mark ``paths`` and their ancestors seen."""
        rows: list[tuple[bytes]] = []
        for path in paths:
            rows.append((path,))
            parent = path.rpartition(b"/")[0]
            if parent and parent not in self._ancestors:
                chain = set()
                while parent:
                    chain.add(parent)
                    parent = parent.rpartition(b"/")[0]
                rows.extend((p,) for p in chain - self._ancestors)
                self._ancestors = chain
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", rows)

    def __contains__(self, path: bytes) -> bool:
        query = "SELECT 1 FROM seen WHERE path = ?"
        return self._db.execute(query, (path,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class TooManyDeletes(Exception):
    """An INIT would remove more of the mirror than ``init.max-delete`` allows."""

    def __init__(self, doomed: int, total: int, examples: list[bytes]) -> None:
        self.doomed, self.total, self.examples = doomed, total, examples
        shown = ", ".join(repr(os.fsdecode(p)) for p in examples)
        super().__init__(
            f"the full sync would delete {doomed} of the {total} entries in the mirror"
            f" ({100 * doomed / max(total, 1):.0f}%, more than init.max-delete allows),"
            f" among them {shown}; the mirror is kept as it is. If the worker really"
            " lost them, run once with -o init.max-delete=100%"
        )


def _walk_unseen(
    datadir: bytes, seen: SeenSet, protected: Collection[bytes]
) -> Iterator[tuple[bytes, os.DirEntry[bytes] | None, bool]]:
    """Yield ``(path, entry, unseen)`` for the mirror's entries, depth first.

    An unseen directory is yielded once and not entered; the sub-trees of
    directories mirrord could not read (``protected``) are not entered at
    all: what the mirror holds there stays.  Streams (one ``scandir`` per
    level of the current branch) and never follows symlinks.
    """
    stack = [os.scandir(datadir)]
    prefixes = [b""]
    try:
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop().close()
                prefixes.pop()
                continue
            if len(stack) == 1 and entry.name in RESERVED:
                continue
            path = prefixes[-1] + b"/" + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if path not in seen:
                yield path, entry, True
            else:
                yield path, entry, False
                if is_dir and path not in protected:
                    stack.append(os.scandir(entry.path))
                    prefixes.append(path)
    finally:
        for it in stack:
            it.close()


def _count_tree(entry: os.DirEntry[bytes]) -> int:
    """Entries at and below ``entry`` (not following symlinks)."""
    if not entry.is_dir(follow_symlinks=False):
        return 1
    count = 1
    for _top, dirs, files in os.walk(entry.path):
        count += len(dirs) + len(files)
    return count


def sweep_unseen(
    datadir: bytes,
    seen: SeenSet,
    on_remove: Callable[[bytes], None] | None = None,
    *,
    max_delete: float = 1.0,
    protected: Collection[bytes] = (),
) -> int:
    """Remove mirror entries ``seen`` lacks; returns how many were removed.

    A first pass counts: when more than ``max_delete`` (a share) of the
    mirror's entries would go, nothing is removed and ``TooManyDeletes``
    says what would have gone.  Runs blocking; the client calls it in a
    thread between INIT and NEXT.
    """
    import shutil

    if max_delete < 1.0:
        total = doomed = 0
        examples: list[bytes] = []
        for path, entry, unseen in _walk_unseen(datadir, seen, protected):
            assert entry is not None
            size = _count_tree(entry) if unseen else 1
            total += size
            if unseen:
                doomed += size
                if len(examples) < 5:
                    examples.append(path)
        if doomed > max_delete * total:
            raise TooManyDeletes(doomed, total, examples)
    removed = 0
    for path, entry, unseen in _walk_unseen(datadir, seen, protected):
        if not unseen:
            continue
        assert entry is not None
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        removed += 1
        if on_remove is not None:
            on_remove(path)
    return removed


def holds_nothing(datadir: bytes) -> bool:
    """True when the mirror has no entry yet (only fs_mirror's own files)."""
    with os.scandir(datadir) as entries:
        return all(entry.name in RESERVED for entry in entries)


class InitSweep:
    """One INIT's seen-set and, at its end, the sweep (blocking; run in a thread).

    An INIT into a mirror that held nothing when it began has nothing to
    sweep: every entry there came from the stream. Then no seen-set is kept
    at all, which spared a first sync of 100,000 files a tenth of its time
    (sqlite inserts during the stream, a lookup per entry at its end).
    """

    def __init__(self, datadir: bytes, staging: bytes) -> None:
        self.datadir = datadir
        self.path = os.path.join(staging, b"init-seen.sqlite")
        self._seen: SeenSet | None = None
        self._protected: set[bytes] = set()

    def begin(self) -> None:
        self.close()
        self._protected = set()
        if not holds_nothing(self.datadir):
            self._seen = SeenSet(self.path)

    def mark(self, paths: list[bytes]) -> None:
        if self._seen is not None:
            self._seen.add(paths)

    def protect(self, path: bytes) -> None:
        """Keep everything below ``path``: mirrord could not read it (``unreadable=1``)."""
        self._protected.add(path)

    def finish(
        self, on_remove: Callable[[bytes], None] | None = None, max_delete: float = 1.0
    ) -> int:
        """Sweep what was not marked (nothing if no INIT began); returns entries removed.

        Raises ``TooManyDeletes`` (and removes nothing) past ``max_delete``.
        """
        if self._seen is None:
            return 0
        try:
            return sweep_unseen(
                self.datadir,
                self._seen,
                on_remove,
                max_delete=max_delete,
                protected=frozenset(self._protected),
            )
        finally:
            self.close()

    def close(self) -> None:
        if self._seen is not None:
            self._seen.close()
            self._seen = None
