"""The values a change is made of inside mirrord, from an event to the store.

A change used to travel as tuples whose first item was a string (``("put",
path, entry)``, ``("dirty", path, ...)``, ``(path, "listing")``): nothing
checked the spelling, and every reader knew the positions by heart. Here each
kind is a frozen value of its own, matched with ``match``:

- what the snapshot remembers of a path (:class:`Entry`) and its stored form;
- snapshot operations (:data:`Op`): what ``Store.apply`` does to the snapshot;
- a :class:`Change`: an op and the record, if any, that the wmLog gets for it;
- journal queue items (:data:`QueueItem`): what the monitor said in a turn;
- walk modes (:class:`WalkMode`) and the follow-ups a reconcile asks for
  (:data:`FollowUp`).

It also holds the one mapping from a snapshot entry to the protocol record
that makes it on a client from nothing (:func:`record_of`): the INIT stream
and the scanner's diff both use it, so the two cannot drift apart.

Pure: no I/O, nothing of mirrord's imported, only ``protocol.records``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from protocol.records import Action, Meta, Record

__all__ = [
    "DIR",
    "FILE",
    "LINK",
    "Change",
    "Computed",
    "Dirty",
    "Drop",
    "DropTree",
    "Entry",
    "FollowUp",
    "ListingWalk",
    "Lost",
    "MoveTree",
    "Op",
    "Put",
    "QueueItem",
    "Renamed",
    "TreeWalk",
    "Walk",
    "WalkMode",
    "kind_of",
    "meta_of",
    "move_meta",
    "record_of",
]

DIR: Final = b"d"
FILE: Final = b"f"
LINK: Final = b"l"
_KINDS: Final = {0o040000: DIR, 0o100000: FILE, 0o120000: LINK}
_ENTRY: Final = struct.Struct(">cHIIQqq")
_UNREADABLE: Final = 0x8000  # in the stored mode field, above the 12 permission bits


def kind_of(st_mode: int) -> bytes | None:
    """``DIR``, ``FILE`` or ``LINK`` for a stat mode; None for types never mirrored."""
    return _KINDS.get(st_mode & 0o170000)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the snapshot remembers of one path: enough to detect any change."""

    kind: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    target: bytes = b""
    #: a directory mirrord could not list: what is below it stays as it was
    unreadable: bool = False

    @classmethod
    def from_stat(cls, st: os.stat_result, target: bytes = b"") -> Entry:
        kind = kind_of(st.st_mode)
        if kind is None:
            raise ValueError(f"file type {st.st_mode & 0o170000:#o} is not mirrored")
        size = st.st_size if kind == FILE else 0
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
        return cls(kind, mode, uid, gid, size, st.st_mtime_ns, st.st_ctime_ns, target)

    def pack(self) -> bytes:
        """The stored form: fixed fields, then the symlink target."""
        mode = self.mode | _UNREADABLE if self.unreadable else self.mode
        fields = (self.kind, mode, self.uid, self.gid, self.size, self.mtime_ns, self.ctime_ns)
        return _ENTRY.pack(*fields) + self.target

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        kind, mode, uid, gid, size, mtime_ns, ctime_ns = _ENTRY.unpack_from(data)
        return cls(
            kind,
            mode & ~_UNREADABLE,
            uid,
            gid,
            size,
            mtime_ns,
            ctime_ns,
            data[_ENTRY.size :],
            bool(mode & _UNREADABLE),
        )


# -- the entry as a client sees it --------------------------------------------------
def meta_of(e: Entry, size: bool = True, mtime: bool = True, unreadable: bool = True) -> Meta:
    """The metadata fields a record carries for ``e``, leaving out what is asked
    (``mode``: the permission bits alone, whatever else a caller's entry holds)."""
    return Meta(
        mode=e.mode & 0o7777,
        uid=e.uid,
        gid=e.gid,
        size=e.size if size else None,
        mtime_ns=e.mtime_ns if mtime else None,
        unreadable=unreadable and e.unreadable,
    )


def record_of(path: bytes, e: Entry) -> Record:
    """The record that makes ``e`` at ``path`` on a client that has nothing there:
    CREATE for a directory, FWRITE for a file, SYMLINK for a link."""
    if e.kind == LINK:
        return Record(Action.SYMLINK, path, target=e.target)
    if e.kind == DIR:
        return Record(Action.CREATE, path, meta=meta_of(e, size=False))
    return Record(Action.FWRITE, path, meta=meta_of(e))


def move_meta(e: Entry) -> Meta:
    """The fields a MOVE carries: the moved entry's metadata, so a client that
    must fetch instead (its source is missing) still ends with the right mode."""
    if e.kind == LINK:
        return Meta()
    return meta_of(e, size=e.kind == FILE, unreadable=False)


# -- snapshot operations ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Put:
    """Store ``entry`` at ``path`` (new or replacing what was there)."""

    path: bytes
    entry: Entry


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove the one entry at ``path`` (absent is fine); its sub-tree stays."""

    path: bytes


@dataclass(frozen=True, slots=True)
class DropTree:
    """Remove ``path`` and everything below it."""

    path: bytes


@dataclass(frozen=True, slots=True)
class MoveTree:
    """Re-key ``src`` and its sub-tree under ``dst``, replacing what ``dst`` held."""

    src: bytes
    dst: bytes


Op = Put | Drop | DropTree | MoveTree


@dataclass(frozen=True, slots=True)
class Change:
    """One snapshot op and the record the wmLog gets for it; ``record`` None only
    updates the snapshot (a change a client need not hear of)."""

    op: Op
    record: Record | None = None


# -- the journal's queue of a turn --------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dirty:
    """The monitor said ``path`` may have changed (see ``Journal.dirty``)."""

    path: bytes
    recursive: bool = False
    written: bool = False
    present: bool = False

    def merged(self, recursive: bool, written: bool, present: bool) -> Dirty:
        """This item and another told of the same path since the last rename."""
        return Dirty(
            self.path,
            self.recursive or recursive,
            self.written or written,
            self.present and present,  # a delete among them says it is gone
        )


@dataclass(frozen=True, slots=True)
class Renamed:
    """The monitor saw ``src`` renamed to ``dst``; ``stale``: a walk that had not
    passed ``src`` when it was told may have recorded the disk after the rename."""

    src: bytes
    dst: bytes
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Computed:
    """Changes worked out elsewhere (a removed include), committed in order."""

    changes: tuple[Change, ...]


QueueItem = Dirty | Renamed | Computed


# -- walks ----------------------------------------------------------------------------
class WalkMode(Enum):
    """How a walk handles a directory it meets."""

    FULL = "full"  # list it
    CHANGED = "changed"  # list it only when its mtime/ctime moved
    LISTING = "listing"  # list it, descend into new directories only
    NEW_ONLY = "new-only"  # do not list it, descend into new directories only
    FORCE = "force"  # list it, send every entry below as new (it was unreadable)


@dataclass(frozen=True, slots=True)
class TreeWalk:
    """Walk all of ``path`` (a new directory, or one told ``recursive``)."""

    path: bytes


@dataclass(frozen=True, slots=True)
class ListingWalk:
    """List the known directory ``path`` whose entries changed."""

    path: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    """Not a walk: a path an event said exists is gone, so a rename of it or of a
    parent is still to be told; the snapshot keeps it as it has it until then."""

    path: bytes


Walk = TreeWalk | ListingWalk
FollowUp = TreeWalk | ListingWalk | Lost
