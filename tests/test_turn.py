"""mirrord.turn: one reactor turn's queue, merged and re-queued across renames (pure)."""

from __future__ import annotations

from mirrord.turn import REMAP_LIMIT, TurnQueue
from mirrord.values import Computed, Dirty, Renamed


def test_same_path_told_twice_is_one_item():
    """A path told dirty twice in a turn is one queued item with both tellings' flags."""
    q = TurnQueue()
    q.dirty(Dirty(b"/a/f", written=True, present=True))
    q.dirty(Dirty(b"/a/f", present=True))
    assert q.drain() == [Dirty(b"/a/f", written=True, present=True)]
    assert q.drain() == []


def test_rename_requeues_what_is_below_it_after_the_rename():
    """Dirty paths at or below a renamed source follow it, queued after the rename."""
    q = TurnQueue()
    q.dirty(Dirty(b"/a/f", written=True))
    q.dirty(Dirty(b"/other"))
    q.renamed(Renamed(b"/a", b"/b"))
    assert q.drain() == [
        Dirty(b"/other"),
        Renamed(b"/a", b"/b"),
        Dirty(b"/b/f", written=True),
    ]


def test_a_renamed_path_itself_follows_without_a_scan():
    """A file told dirty and then renamed is looked at under its new name only."""
    q = TurnQueue()
    q.dirty(Dirty(b"/f", present=True))
    q.renamed(Renamed(b"/f", b"/g", stale=True))
    assert q.drain() == [Renamed(b"/f", b"/g", stale=True), Dirty(b"/g", present=True)]


def test_no_merge_across_a_rename():
    """A path told before and after a rename stays two items: the order is the story."""
    q = TurnQueue()
    q.dirty(Dirty(b"/x"))
    q.renamed(Renamed(b"/y", b"/z"))
    q.dirty(Dirty(b"/x", recursive=True))
    q.add([])
    assert q.drain() == [Dirty(b"/x"), Renamed(b"/y", b"/z"), Dirty(b"/x", True), Computed(())]


def test_a_long_queue_is_not_rescanned_for_a_rename():
    """Past REMAP_LIMIT items a rename leaves nested dirty paths where they are."""
    q = TurnQueue()
    for i in range(REMAP_LIMIT + 1):
        q.dirty(Dirty(b"/a/%d" % i))
    q.renamed(Renamed(b"/a", b"/b"))
    items = q.drain()
    assert len(items) == REMAP_LIMIT + 2 and items[-1] == Renamed(b"/a", b"/b")
