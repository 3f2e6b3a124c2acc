"""Compare the disk with the snapshot and turn the differences into changes.

A change is ``(record_or_None, op)``: the record goes to the wmLog, the op
(as ``Store.commit`` takes it) keeps the snapshot equal to the disk.

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
from typing import Any, Protocol

from mirrord.store import DIR, FILE, LINK, Entry, Op, kind_of, path_key
from protocol.records import Action, Meta, Record

__all__ = [
    "Change",
    "ScanStats",
    "changes",
    "diff",
    "dir_readable",
    "disk_entry",
    "overlaps",
    "parent_path",
    "reconcile",
    "scan_roots",
    "scan_tree",
]

Change = tuple[Record | None, Op]
Watch = Callable[[bytes], bool]
Report = Callable[[bytes, OSError], None]
BATCH = 500
GONE = (errno.ENOENT, errno.ENOTDIR)
# os.access with the effective ids: mirrord may run set-uid, or under setpriv
_EFFECTIVE = os.access in os.supports_effective_ids

# how a directory is handled: FULL lists it; CHANGED lists it only when its
# mtime/ctime moved; LISTING lists it and descends into new directories only;
# NONE descends into new directories only; FORCE lists it and sends every entry
# below as new (the directory was unreadable until now).
FULL, CHANGED, LISTING, NONE, FORCE = range(5)
UNREADABLE: Any = object()  # what ``_Walk.listdir`` returns for a directory it cannot read
TREE = "tree"  # follow-up kinds returned by reconcile
DIRLIST = "listing"
LOST = "lost"  # not a walk: a ``present`` path gone, kept as the snapshot has it


class Reader(Protocol):
    def get(self, path: bytes) -> Entry | None: ...
    def children_chunk(
        self, dir_path: bytes, after: bytes | None = None, limit: int = ...
    ) -> list[tuple[bytes, Entry]]: ...


class Membership(Protocol):
    def __contains__(self, path: object) -> bool: ...


@dataclass
class ScanStats:
    """What a walk cost: directories listed, entries looked at, wall seconds."""

    dirs_listed: int = 0
    entries_seen: int = 0
    seconds: float = 0.0
    position: bytes = b""  # the path visited last, so a caller can tell what is done


def diff(path: bytes, old: Entry | None, new: Entry | None, *, seen: bool = False) -> list[Record]:
    """The records that turn ``old`` into ``new`` on a client (pure).

    A file's content is known to be unchanged only when nothing that a write
    changes has changed. Size and mtime can both be put back (a rewrite of the
    same size followed by ``os.utime``, as tar, ``rsync -t`` and ``cp -p`` do);
    ctime cannot be set and moves on every write, but also on a chmod, chown,
    link, unlink of another name, rename or xattr change, which stat cannot
    tell from a write. So, for a file whose size and mtime are unchanged:

    - ctime unchanged: ATTRIB if mode, uid or gid changed, else nothing;
    - ctime changed, ``seen=False`` (a walk: boot, overflow or verification
      rescan, a directory listing; nobody saw what happened): FWRITE, which
      carries mode, uid and gid as well. A needless fetch costs one transfer;
      a missed rewrite is a mirror that silently differs for good;
    - ctime changed, ``seen=True`` (``reconcile`` of a path whose events were
      read, or the listing of a directory that events said changed: a write
      there came as IN_CLOSE_WRITE, which passes ``written`` and forces an
      FWRITE): ATTRIB if mode, uid or gid changed, else nothing; a file
      renamed or linked live (which moves its ctime) must not be fetched again.

    Content written through mmap or through a hard link outside the tree
    raises no event: the verification rescan (``seen=False``) finds it.
    """
    if new is None:
        return [] if old is None else [Record(Action.DELETE, path)]
    out = []
    if old is not None and old.kind != new.kind:
        out.append(Record(Action.DELETE, path))
        old = None
    owner_changed = old is not None and (old.mode, old.uid, old.gid) != (
        new.mode,
        new.uid,
        new.gid,
    )
    if new.kind == DIR:
        if old is None or (new.unreadable and not old.unreadable):
            out.append(Record(Action.CREATE, path, meta=_meta(new, size=False)))
        elif owner_changed:
            out.append(Record(Action.ATTRIB, path, meta=_meta(new, size=False, mtime=False)))
    elif new.kind == FILE:
        if (
            old is None
            or (old.size, old.mtime_ns) != (new.size, new.mtime_ns)
            or (not seen and old.ctime_ns != new.ctime_ns)
        ):
            out.append(Record(Action.FWRITE, path, meta=_meta(new)))
        elif owner_changed:
            out.append(Record(Action.ATTRIB, path, meta=_meta(new, size=False, mtime=False)))
    elif new.kind == LINK and (old is None or old.target != new.target):
        out.append(Record(Action.SYMLINK, path, target=new.target))
    return out


def move_meta(e: Entry) -> Meta:
    """The fields a MOVE carries: the moved entry's metadata, so a client that
    must fetch instead (its source is missing) still ends with the right mode."""
    if e.kind == LINK:
        return Meta()
    return _meta(e, size=e.kind == FILE, unreadable=False)


def _meta(e: Entry, size: bool = True, mtime: bool = True, unreadable: bool = True) -> Meta:
    return Meta(
        mode=e.mode,
        uid=e.uid,
        gid=e.gid,
        size=e.size if size else None,
        mtime_ns=e.mtime_ns if mtime else None,
        unreadable=unreadable and e.unreadable,
    )


def changes(
    path: bytes, old: Entry | None, new: Entry | None, *, seen: bool = False
) -> list[Change]:
    """``diff`` paired with the snapshot ops; a change without a record only updates."""
    if old == new:
        return []
    records = diff(path, old, new, seen=seen)
    if new is None:
        return [(records[0], ("deltree", path))]
    if old is not None and old.kind != new.kind:
        return [(records[0], ("deltree", path)), (records[1], ("put", path, new))]
    return [(records[0] if records else None, ("put", path, new))]


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


def forced(path: bytes, old: Entry | None, new: Entry | None) -> list[Change]:
    """Like ``changes``, but ``new`` is sent in full even if ``old`` equals it."""
    if new is None or (old is not None and old.kind != new.kind):
        return changes(path, old, new)
    records = diff(path, None, new)
    return [(records[0] if records else None, ("put", path, new))]


def _child_mode(mode: int, fresh: bool, locked: bool) -> int:
    """How the children of a directory listed in ``mode`` are handled."""
    if locked or mode == FORCE:
        return FORCE
    if fresh:
        return FULL
    return mode if mode in (FULL, CHANGED) else NONE


def _ignore(path: bytes, error: OSError) -> None:
    pass


class _SnapChildren:
    """A directory's snapshot children, fetched in chunks, peekable.

    Refills start after the last name fetched or the last name processed,
    whichever is later, so entries our own chunk commits put in between are
    not mistaken for old ones.
    """

    def __init__(self, store: Reader, dir_path: bytes) -> None:
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
        store: Reader,
        watch: Watch,
        stats: ScanStats,
        report: Report,
        on_root_gone: Callable[[bytes], None] | None = None,
    ) -> None:
        self.identity, self.store, self.watch, self.stats = identity, store, watch, stats
        self.report = report
        self.on_root_gone = on_root_gone
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

    def listdir(self, path: bytes) -> Any:
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
        self, path: bytes, old: Entry | None, new: Entry | None, mode: int
    ) -> tuple[Iterator[Any], int] | None:
        """Emit the changes of one path; return the frame to descend with, if any."""
        frame = None
        self.stats.position = path
        if new is not None and new.kind == DIR:
            fresh = old is None or old.kind != DIR
            locked = not fresh and old is not None and old.unreadable  # until now
            moved = old is not None and (old.mtime_ns, old.ctime_ns) != (new.mtime_ns, new.ctime_ns)
            if fresh or locked or mode in (FULL, LISTING, FORCE) or (mode == CHANGED and moved):
                names = self.listdir(path)
                if names is UNREADABLE:
                    new = replace(new, unreadable=True)
                else:
                    if names is None:  # vanished or replaced between lstat and listdir
                        new = self.entry(path, None)
                        if new is None and self._root_gone(path, old):
                            return None
                        names = [] if new is not None and new.kind == DIR else None
                    if names is not None:
                        child = _child_mode(mode, fresh, locked)
                        frame = (self.merge(path, names), child)
            elif mode == CHANGED:
                if self.watch_only(path):
                    frame = (self.merge(path, None), CHANGED)
                else:
                    new = replace(new, unreadable=True)
        if mode == FORCE:
            found = forced(path, old, new)
        else:  # a listing after events compares names whose own events are read too
            found = changes(path, old, new, seen=mode in (LISTING, NONE))
        if not found and new is not None and new.unreadable:
            found = [(None, ("put", path, new))]  # unchanged, but the journal counts it
        self.out.extend(found)
        return frame

    def _root_gone(self, path: bytes, old: Entry | None) -> bool:
        """The walk's own root, stored, is gone: tell ``on_root_gone`` instead of deleting."""
        if path != self.root or old is None or self.on_root_gone is None:
            return False
        self.on_root_gone(path)
        return True

    def merge(self, dir_path: bytes, names: list[bytes] | None) -> Iterator[Any]:
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
            yield path, old, self.entry(path, old)
        while (head := snap.peek()) is not None:
            snap.buf.popleft()
            yield base + b"/" + head[0], head[1], None

    def run(self, root: bytes, mode: int) -> Iterator[list[Change]]:
        started = time.monotonic()
        stack = []
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
            frame = self.visit(*item, stack[-1][1])
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
    store: Reader,
    watch: Watch,
    *,
    full: bool = True,
    listing: bool = False,
    stats: ScanStats | None = None,
    report: Report | None = None,
    on_root_gone: Callable[[bytes], None] | None = None,
) -> Iterator[list[Change]]:
    """Walk ``root`` against the snapshot, yielding lists of changes (maybe empty).

    ``full=False`` re-lists only directories whose mtime/ctime changed;
    ``listing=True`` lists ``root`` and descends only into new directories.
    Pass ``stats`` to read the cost afterwards, ``report`` to hear of each
    directory that cannot be read and each entry that cannot be stat-ed.
    ``on_root_gone(root)``: called instead of deleting a stored ``root`` found gone.
    """
    mode = LISTING if listing else FULL if full else CHANGED
    stats = stats if stats is not None else ScanStats()
    return _Walk(identity, store, watch, stats, report or _ignore, on_root_gone).run(root, mode)


def parent_path(path: bytes) -> bytes:
    return path.rpartition(b"/")[0] or b"/"


def overlaps(a: bytes, b: bytes) -> bool:
    """True when one path is the other or inside it (whole components)."""
    ka, kb = path_key(a), path_key(b)
    return ka == kb or ka.startswith(kb + b"\0") or kb.startswith(ka + b"\0")


def scan_roots(identity: Any, roots: Iterable[bytes]) -> list[bytes]:
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


def reconcile(
    path: bytes,
    identity: Any,
    store: Reader,
    watch: Watch,
    *,
    recursive: bool = False,
    written: bool = False,
    present: bool = False,
    report: Report | None = None,
) -> tuple[list[Change], tuple[bytes, str] | None]:
    """Bring one path's snapshot entry up to date (O(1) work).

    Returns its changes and the follow-up walk its directory needs, if any:
    ``(dir, "tree")`` for a new directory (or ``recursive``), ``(dir,
    "listing")`` for a known one whose entries changed. A path whose parent is
    missing from the snapshot reconciles the highest missing ancestor instead.
    ``written`` (IN_CLOSE_WRITE) forces an FWRITE for an unchanged-looking file
    (two writes within one timestamp tick leave size and mtime equal; so does a
    rewrite with the mtime put back), also when its mode or owner changed too:
    the FWRITE carries them, an ATTRIB would leave the old content. Without
    it, a file whose ctime alone moved is not fetched (``diff`` with
    ``seen=True``): the path's events were read, and a write would have said so.
    ``present``: the event said the path exists; found gone, it is no
    DELETE but ``(path, LOST)`` (a rename of it or of a parent is still to be
    told, see ``Journal.dirty``), also when the snapshot never had it: that
    rename carries only what the snapshot holds, so a new entry deep below
    it would otherwise never be told.
    Below a directory stored as unreadable nothing changes; a directory that
    can no longer be read is stored as unreadable and not walked; one that
    can be read again keeps the flag until its walk has sent what is below it.
    """
    roots: set[bytes] | None = None  # computed only to climb: not once per event
    while path != b"/":
        parent = parent_path(path)
        known = store.get(parent)
        if known is not None and known.kind == DIR:
            if known.unreadable:  # what is below it stays as it was until it is read
                return [], None
            break
        if parent not in identity:
            break
        if roots is None:
            roots = set(identity.roots())
        if path in roots:
            break
        path, recursive = parent, True
    old = store.get(path)
    try:
        new = disk_entry(path, strict=True) if path in identity else None
    except OSError as e:  # cannot stat it: it stays as the snapshot has it
        (report or _ignore)(path, e)
        return [], None
    if new is None and present and path in identity:  # also one the snapshot never had
        return [], (path, LOST)
    follow = None
    if new is not None and new.kind == DIR:
        if not dir_readable(path):
            new = replace(new, unreadable=True)
        elif old is not None and old.kind == DIR and old.unreadable:
            # readable again: the walk sends all below it, and needs to know it was not
            new, follow = replace(new, unreadable=True), (path, TREE)
        elif recursive or old is None or old.kind != DIR:
            follow = (path, TREE)
        elif old.mtime_ns != new.mtime_ns:
            follow = (path, DIRLIST)
    found = changes(path, old, new, seen=True)  # its events were read: see ``diff``
    if (
        written
        and new is not None
        and new.kind == FILE
        and old is not None
        and old.kind == FILE
        and not any(record is not None and record.action is Action.FWRITE for record, _ in found)
    ):  # an ATTRIB alone (a chmod read in the same turn) would leave the old content
        found = [(diff(path, None, new)[0], ("put", path, new))]
    return found, follow
