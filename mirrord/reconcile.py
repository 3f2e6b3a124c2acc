"""Bring one path that an event named up to date with the disk, in O(1) work.

The journal calls this for every path the monitor marks dirty, inside the
turn's store transaction, so it must never walk: it stats the one path,
compares it with the snapshot (``diff.py``) and, when a directory needs more
(new, ``recursive``, its entries changed, readable again), says so as a
follow-up (:class:`~mirrord.values.TreeWalk`, :class:`~mirrord.values.ListingWalk`)
that the journal runs as a cooperative walk (``scan.py``) after the commit.
"""

from __future__ import annotations

from dataclasses import replace

from mirrord.diff import changes, diff
from mirrord.paths import parent_path
from mirrord.scan import dir_readable, disk_entry
from mirrord.seams import Identity, Report, SnapshotReader, Watch
from mirrord.values import DIR, FILE, Change, FollowUp, ListingWalk, Lost, Put, TreeWalk
from protocol.records import Action

__all__ = ["reconcile"]


def reconcile(
    path: bytes,
    identity: Identity,
    store: SnapshotReader,
    watch: Watch,
    *,
    recursive: bool = False,
    written: bool = False,
    present: bool = False,
    report: Report | None = None,
) -> tuple[list[Change], FollowUp | None]:
    """Bring one path's snapshot entry up to date (O(1) work).

    Returns its changes and the follow-up walk its directory needs, if any:
    ``TreeWalk(dir)`` for a new directory (or ``recursive``),
    ``ListingWalk(dir)`` for a known one whose entries changed. A path whose
    parent is missing from the snapshot reconciles the highest missing
    ancestor instead. ``written`` (IN_CLOSE_WRITE) forces an FWRITE for an
    unchanged-looking file (two writes within one timestamp tick leave size
    and mtime equal; so does a rewrite with the mtime put back), also when its
    mode or owner changed too: the FWRITE carries them, an ATTRIB would leave
    the old content. Without it, a file whose ctime alone moved is not
    fetched (``diff`` with ``seen=True``): the path's events were read, and a
    write would have said so. ``present``: the event said the path exists;
    found gone, it is no DELETE but ``Lost(path)`` (a rename of it or of a
    parent is still to be told, see ``Journal.dirty``), also when the snapshot
    never had it: that rename carries only what the snapshot holds, so a new
    entry deep below it would otherwise never be told. ``watch`` is not
    called (nothing is listed here); it is taken for the walks' signature.
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
        if report is not None:
            report(path, e)
        return [], None
    if new is None and present and path in identity:  # also one the snapshot never had
        return [], Lost(path)
    follow: FollowUp | None = None
    if new is not None and new.kind == DIR:
        if not dir_readable(path):
            new = replace(new, unreadable=True)
        elif old is not None and old.kind == DIR and old.unreadable:
            # readable again: the walk sends all below it, and needs to know it was not
            new, follow = replace(new, unreadable=True), TreeWalk(path)
        elif recursive or old is None or old.kind != DIR:
            follow = TreeWalk(path)
        elif old.mtime_ns != new.mtime_ns:
            follow = ListingWalk(path)
    found = changes(path, old, new, seen=True)  # its events were read: see ``diff``
    if (
        written
        and new is not None
        and new.kind == FILE
        and old is not None
        and old.kind == FILE
        and not any(c.record is not None and c.record.action is Action.FWRITE for c in found)
    ):  # an ATTRIB alone (a chmod read in the same turn) would leave the old content
        found = [Change(Put(path, new), diff(path, None, new)[0])]
    return found, follow
