"""What a client must be told when a snapshot entry changes, and what the snapshot does.

Pure: entries in, records and snapshot ops out. The walks (``scan.py``) and
the one-path reconcile (``reconcile.py``) read the disk and the snapshot and
hand both sides here, so every way mirrord notices a change decides what it
means in one place.
"""

from __future__ import annotations

from mirrord.values import DIR, FILE, LINK, Change, DropTree, Entry, Put, meta_of, record_of
from protocol.records import Action, Record

__all__ = ["changes", "diff", "forced"]


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
            out.append(record_of(path, new))
        elif owner_changed:
            out.append(Record(Action.ATTRIB, path, meta=meta_of(new, size=False, mtime=False)))
    elif new.kind == FILE:
        if (
            old is None
            or (old.size, old.mtime_ns) != (new.size, new.mtime_ns)
            or (not seen and old.ctime_ns != new.ctime_ns)
        ):
            out.append(record_of(path, new))
        elif owner_changed:
            out.append(Record(Action.ATTRIB, path, meta=meta_of(new, size=False, mtime=False)))
    elif new.kind == LINK and (old is None or old.target != new.target):
        out.append(record_of(path, new))
    return out


def changes(
    path: bytes, old: Entry | None, new: Entry | None, *, seen: bool = False
) -> list[Change]:
    """``diff`` paired with the snapshot ops; a change without a record only updates."""
    if old == new:
        return []
    records = diff(path, old, new, seen=seen)
    if new is None:
        return [Change(DropTree(path), records[0])]
    if old is not None and old.kind != new.kind:
        return [Change(DropTree(path), records[0]), Change(Put(path, new), records[1])]
    return [Change(Put(path, new), records[0] if records else None)]


def forced(path: bytes, old: Entry | None, new: Entry | None) -> list[Change]:
    """Like ``changes``, but ``new`` is sent in full even if ``old`` equals it."""
    if new is None or (old is not None and old.kind != new.kind):
        return changes(path, old, new)
    return [Change(Put(path, new), record_of(path, new))]
