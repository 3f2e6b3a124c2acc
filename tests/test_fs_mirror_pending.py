"""A batch's pending fetches follow its later records: moved, dropped, merged, taken once."""

from __future__ import annotations

from fs_mirror.pending import Pending
from protocol.records import Meta


def test_move_rekeys_the_subtree_and_keeps_guesses() -> None:
    """A MOVE carries what is pending at and below its source, guesses included, by component."""
    p = Pending()
    p.add(b"/a", Meta(size=1))
    p.add(b"/a/x", Meta(size=2), guessed=True)
    p.add(b"/ab", Meta(size=3))
    assert p.move(b"/a", b"/b") is True
    pending, guessed = p.take()
    assert pending == {b"/b": Meta(size=1), b"/b/x": Meta(size=2), b"/ab": Meta(size=3)}
    assert guessed == {b"/b/x"}
    assert p.take() == ({}, set())


def test_drop_and_discard() -> None:
    """drop forgets a whole tree, discard only the path itself."""
    p = Pending()
    for path in (b"/d", b"/d/f", b"/d/g/h", b"/dx"):
        p.add(path, Meta())
    p.discard(b"/d")
    assert b"/d" not in p and b"/d/f" in p
    p.drop(b"/d")
    assert p.take()[0] == {b"/dx": Meta()}


def test_merge_only_touches_what_is_pending() -> None:
    """ATTRIB metadata joins a pending fetch's; a path not pending is left alone."""
    p = Pending()
    p.add(b"/f", Meta(size=5))
    assert p.merge(b"/f", Meta(mode=0o600)) is True
    assert p.merge(b"/other", Meta(mode=0o600)) is False
    assert p.take()[0] == {b"/f": Meta(mode=0o600, size=5)}


def test_a_move_onto_a_pending_tree_replaces_it() -> None:
    """What was pending at the destination is gone once something moves over it."""
    p = Pending()
    p.add(b"/dst/old", Meta())
    p.add(b"/src", Meta(size=1))
    p.move(b"/src", b"/dst")
    assert p.take()[0] == {b"/dst": Meta(size=1)}
