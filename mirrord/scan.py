"""Compare the disk with the snapshot and turn the differences into changes.

A :class:`~mirrord.values.Change` is a snapshot op and the record, if any,
the wmLog gets for it (``diff.py`` decides both); the op keeps the snapshot
equal to the disk. One path seen by an event goes through ``reconcile.py``
instead, which costs O(1) and asks for a walk here only when it must.

The walk is a generator for ``task.Cooperator``: it visits the disk depth
first with children sorted by name bytes, the snapshot's key order, and
merge-joins each directory's listing with that directory's snapshot
children, read in chunks. Memory is one listing per level of the current
path, never the whole tree. ``watch(dir)`` is called before a directory is
listed, so nothing created after the listing escapes both the listing and
inotify. Paths that vanish while we look are simply gone.

Change is detected from stored stat fields (type, size, mtime, ctime, mode,
owner; see ``diff`` for what a ctime that moved alone means). ``full=False`` (overflow
recovery) trusts a directory whose mtime and ctime are unchanged: its names
come from the snapshot and are only lstat'ed, so recovery lists only the
directories that changed.

A directory that cannot be watched or listed (EACCES, EPERM, or any other
error but "gone") never fails a walk: it is stored with ``unreadable`` set,
sent as ``CREATE`` with ``unreadable=1``, and what the snapshot holds below it
(from when it was readable) is neither walked nor deleted. Every walk lists
such a directory again; once it can be read, everything below it is sent
again as if new (a client that joined meanwhile has none of it) and what is
gone from it is deleted. An entry that cannot be stat-ed keeps its snapshot
entry. ``report(path, error)`` hears of both, so the journal can log them.
"""

from __future__ import annotations

import errno
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from mirrord.diff import changes, forced
from mirrord.paths import overlaps, parent_path
from mirrord.seams import Identity, Membership, Report, SnapshotReader, Watch
from mirrord.values import DIR, LINK, Change, Entry, Put, WalkMode, kind_of

__all__ = [
    "ScanStats",
    "dir_readable",
    "disk_entry",
    "scan_roots",
    "scan_tree",
]

BATCH = 500
GONE = (errno.ENOENT, errno.ENOTDIR)
# os.access with the effective ids: mirrord may run set-uid, or under setpriv
_EFFECTIVE = os.access in os.supports_effective_ids


class _Unreadable:
    """What ``_Walk.listdir`` returns for a directory it cannot watch or read."""


UNREADABLE: Final = _Unreadable()
#: a directory's children, each as (path, snapshot entry, disk entry), in name order
Children = Iterator[tuple[bytes, Entry | None, Entry | None]]


@dataclass
class ScanStats:
    """What a walk cost: directories listed, entries looked at, wall seconds."""

    dirs_listed: int = 0
    entries_seen: int = 0
    seconds: float = 0.0
    position: bytes = b""  # the path visited last, so a caller can tell what is done


def disk_entry(path: bytes, *, strict: bool = False) -> Entry | None:
    """The path as the snapshot would store it; None if absent or not mirrored.

    ``strict``: an lstat that fails for another reason than the path being
    gone (EACCES from a parent we may not search, EIO) raises that OSError
    instead of passing for absent.
    """
    try:
        st = os.lstat(path)
    except OSError as e:
        if strict and e.errno not in GONE:
            raise
        return None
    kind = kind_of(st.st_mode)
    if kind is None:
        return None
    try:
        return Entry.from_stat(st, os.readlink(path) if kind == LINK else b"")
    except OSError:  # replaced by something else between lstat and readlink
        return None


def dir_readable(path: bytes) -> bool:
    """Can we list the directory ``path`` and stat its entries (read and search)?"""
    return os.access(path, os.R_OK | os.X_OK, effective_ids=_EFFECTIVE)


def _child_mode(mode: WalkMode, fresh: bool, locked: bool) -> WalkMode:
    """How the children of a directory listed in ``mode`` are handled."""
    if locked or mode is WalkMode.FORCE:
        return WalkMode.FORCE
    if fresh:
        return WalkMode.FULL
    return mode if mode in (WalkMode.FULL, WalkMode.CHANGED) else WalkMode.NEW_ONLY


def _ignore(path: bytes, error: OSError) -> None:
    pass


class _SnapChildren:
    """A directory's snapshot children, fetched in chunks, peekable.

    Refills start after the last name fetched or the last name processed,
    whichever is later, so entries our own chunk commits put in between are
    not mistaken for old ones.
    """

    def __init__(self, store: SnapshotReader, dir_path: bytes) -> None:
        self.store, self.dir_path = store, dir_path
        self.cut = 1 if dir_path == b"/" else len(dir_path) + 1
        self.buf: deque[tuple[bytes, Entry]] = deque()
        self.last: bytes | None = None
        self.floor: bytes | None = None
        self.done = False

    def peek(self) -> tuple[bytes, Entry] | None:
        if not self.buf and not self.done:
            after = self.last
            if self.floor is not None and (after is None or self.floor > after):
                after = self.floor
            rows = self.store.children_chunk(self.dir_path, after, 1000)
            self.done = len(rows) < 1000
            self.buf.extend((p[self.cut :], e) for p, e in rows)
            if rows:
                self.last = self.buf[-1][0]
        return self.buf[0] if self.buf else None


class _Walk:
    def __init__(
        self,
        identity: Membership,
        store: SnapshotReader,
        watch: Watch,
        stats: ScanStats,
        report: Report,
        on_root_gone: Callable[[bytes], None] | None = None,
        records: bool = True,
    ) -> None:
        self.identity, self.store, self.watch, self.stats = identity, store, watch, stats
        self.report = report
        self.on_root_gone = on_root_gone
        self.records = records  # False: a first boot's load, which logs none
        self._cut: set[bytes] = set()  # directories told as lost by _listing_cut
        self.root: bytes | None = None
        self.out: list[Change] = []

    def entry(self, path: bytes, old: Entry | None) -> Entry | None:
        """The disk's entry; ``old`` when it cannot be stat-ed (nothing is known then)."""
        self.stats.entries_seen += 1
        if path not in self.identity:
            return None
        try:
            return disk_entry(path, strict=True)
        except OSError as e:
            self.report(path, e)
            return old

    def listdir(self, path: bytes) -> list[bytes] | _Unreadable | None:
        """Sorted names; None when gone; ``UNREADABLE`` when it cannot be watched or read."""
        try:
            self.watch(path)  # before listing: nothing created after it escapes both
            names = os.listdir(path)
            if names and not dir_readable(path):  # readable but not searchable
                raise PermissionError(errno.EACCES, "directory not searchable")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:  # EACCES, EPERM, EIO: keep what the snapshot has below it
            self.report(path, e)
            return UNREADABLE
        self.stats.dirs_listed += 1
        names.sort()
        return names

    def watch_only(self, path: bytes) -> bool:
        """Watch a directory that is not listed again; False when it cannot be watched."""
        try:
            self.watch(path)
        except OSError as e:
            self.report(path, e)
            return False
        return True

    def visit(
        self, path: bytes, old: Entry | None, new: Entry | None, mode: WalkMode
    ) -> tuple[Children, WalkMode] | None:
        """Emit the changes of one path; return the frame to descend with, if any."""
        frame = None
        self.stats.position = path
        if new is not None and new.kind == DIR:
            fresh = old is None or old.kind != DIR
            locked = not fresh and old is not None and old.unreadable  # until now
            moved = old is not None and (old.mtime_ns, old.ctime_ns) != (new.mtime_ns, new.ctime_ns)
            listed = mode in (WalkMode.FULL, WalkMode.LISTING, WalkMode.FORCE)
            if fresh or locked or listed or (mode is WalkMode.CHANGED and moved):
                names = self.listdir(path)
                if isinstance(names, _Unreadable):
                    new = replace(new, unreadable=True)
                else:
                    if names is None:  # vanished or replaced between lstat and listdir
                        new = self.entry(path, None)
                        if new is None and self._root_gone(path, old):
                            return None
                        if new is None and self.on_root_gone is not None:
                            self._listing_cut(path)  # listed by its parent, gone since
                        names = [] if new is not None and new.kind == DIR else None
                    if names is not None:
                        child = _child_mode(mode, fresh, locked)
                        frame = (self.merge(path, names), child)
            elif mode is WalkMode.CHANGED:
                if self.watch_only(path):
                    frame = (self.merge(path, None), WalkMode.CHANGED)
                else:
                    new = replace(new, unreadable=True)
        if old is None and not self.records:  # a first boot: only the snapshot is written
            found = [] if new is None else [Change(Put(path, new))]
        elif mode is WalkMode.FORCE:
            found = forced(path, old, new)
        else:  # a listing after events compares names whose own events are read too
            found = changes(path, old, new, seen=mode in (WalkMode.LISTING, WalkMode.NEW_ONLY))
        if not found and new is not None and new.unreadable:
            found = [Change(Put(path, new))]  # unchanged, but the journal counts it
        self.out.extend(found)
        return frame

    def _listing_cut(self, dir_path: bytes) -> None:
        """A name listed in ``dir_path`` was gone by its lstat: a rename of it or of a
        parent, its event still unread, may have taken what is below ``dir_path`` away
        mid-walk, so ``dir_path`` is told as lost too: walked whole where the rename puts it.
        """
        if dir_path not in self._cut:
            self._cut.add(dir_path)
            assert self.on_root_gone is not None
            self.on_root_gone(dir_path)

    def _root_gone(self, path: bytes, old: Entry | None) -> bool:
        """The walk's own root, stored, is gone: tell ``on_root_gone`` instead of deleting."""
        if path != self.root or old is None or self.on_root_gone is None:
            return False
        self.on_root_gone(path)
        return True

    def merge(self, dir_path: bytes, names: list[bytes] | None) -> Children:
        """(path, old, new) for each child, in name order; ``names`` None trusts the snapshot."""
        snap = _SnapChildren(self.store, dir_path)
        base = b"" if dir_path == b"/" else dir_path
        if names is None:
            while (head := snap.peek()) is not None:
                snap.buf.popleft()
                snap.floor = head[0]
                path = base + b"/" + head[0]
                yield path, head[1], self.entry(path, head[1])
            return
        for name in names:
            while (head := snap.peek()) is not None and head[0] < name:
                snap.buf.popleft()
                yield base + b"/" + head[0], head[1], None
            old = None
            if head is not None and head[0] == name:
                snap.buf.popleft()
                old = head[1]
            snap.floor = name
            path = base + b"/" + name
            new = self.entry(path, old)
            if new is None and self.on_root_gone is not None and path in self.identity:
                self._listing_cut(dir_path)
            yield path, old, new
        while (head := snap.peek()) is not None:
            snap.buf.popleft()
            yield base + b"/" + head[0], head[1], None

    def run(self, root: bytes, mode: WalkMode) -> Iterator[list[Change]]:
        started = time.monotonic()
        stack: list[tuple[Children, WalkMode]] = []
        self.root = root
        old = self.store.get(root)
        new = self.entry(root, old)
        gone = new is None and self._root_gone(root, old)
        frame = None if gone else self.visit(root, old, new, mode)
        if frame is not None:
            stack.append(frame)
        seen = self.stats.entries_seen
        while stack:
            item = next(stack[-1][0], None)
            if item is None:
                stack.pop()
                continue
            frame = self.visit(item[0], item[1], item[2], stack[-1][1])
            if frame is not None:
                stack.append(frame)
            if len(self.out) >= BATCH or self.stats.entries_seen - seen >= BATCH:
                seen = self.stats.entries_seen
                batch, self.out = self.out, []
                self.stats.seconds += time.monotonic() - started
                yield batch
                started = time.monotonic()
        self.stats.seconds += time.monotonic() - started
        batch, self.out = self.out, []
        yield batch


def scan_tree(
    root: bytes,
    identity: Membership,
    store: SnapshotReader,
    watch: Watch,
    *,
    full: bool = True,
    listing: bool = False,
    stats: ScanStats | None = None,
    report: Report | None = None,
    on_root_gone: Callable[[bytes], None] | None = None,
    records: bool = True,
) -> Iterator[list[Change]]:
    """Walk ``root`` against the snapshot, yielding lists of changes (maybe empty).

    ``full=False`` re-lists only directories whose mtime/ctime changed;
    ``listing=True`` lists ``root`` and descends only into new directories.
    Pass ``stats`` to read the cost afterwards, ``report`` to hear of each
    directory that cannot be read and each entry that cannot be stat-ed.
    ``on_root_gone(root)``: called instead of deleting a stored ``root`` found gone.
    ``records=False`` (a first boot, whose load logs nothing) leaves new entries'
    changes without a record, saving the building of one per entry.
    """
    mode = WalkMode.LISTING if listing else WalkMode.FULL if full else WalkMode.CHANGED
    stats = stats if stats is not None else ScanStats()
    walk = _Walk(identity, store, watch, stats, report or _ignore, on_root_gone, records)
    return walk.run(root, mode)


def scan_roots(identity: Identity, roots: Iterable[bytes]) -> list[bytes]:
    """``roots`` plus the includes inside them that an exclude cuts off from above."""
    roots = list(roots)
    nested = getattr(identity, "identities", None)
    groups = [identity] if nested is None else list(nested)
    includes = {p for ident in groups for p in getattr(ident, "includes", ())}
    extra = [
        p
        for p in includes
        if p not in roots
        and p != b"/"
        and parent_path(p) not in identity
        and any(overlaps(p, root) for root in roots)
    ]
    return roots + sorted(extra)
