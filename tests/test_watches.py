"""Tests for mirrord.watches: the compact wd <-> path tree."""

from __future__ import annotations

from mirrord.watches import WatchTree, is_below, join, split


def build() -> WatchTree:
    """/srv (1) / a (2) / b (3) / c (4), and /srv/x (5)."""
    tree = WatchTree()
    tree.add(1, b"/srv")
    tree.add(2, b"/srv/a")
    tree.add(3, b"/srv/a/b")
    tree.add(4, b"/srv/a/b/c")
    tree.add(5, b"/srv/x")
    return tree


def test_split_and_join_by_components() -> None:
    """split/join handle the file-system root and are inverse of each other."""
    assert split(b"/a/b") == (b"/a", b"b")
    assert split(b"/a") == (b"/", b"a")
    assert join(b"/", b"a") == b"/a"
    assert join(b"/a", b"b") == b"/a/b"
    assert is_below(b"/a/b", b"/a") and is_below(b"/a", b"/a")
    assert not is_below(b"/ab", b"/a")
    assert is_below(b"/x", b"/")


def test_path_and_wd_lookups() -> None:
    """Every added watch resolves both ways; unknown ones give None."""
    tree = build()
    assert len(tree) == 5
    for wd, path in [(1, b"/srv"), (3, b"/srv/a/b"), (4, b"/srv/a/b/c"), (5, b"/srv/x")]:
        assert tree.path_of(wd) == path
        assert tree.wd_of(path) == wd
    assert tree.path_of(99) is None
    assert tree.wd_of(b"/srv/a/zz") is None
    assert tree.wd_of(b"/elsewhere/a") is None
    assert tree.wd_of(b"relative") is None


def test_only_the_root_keeps_its_full_path() -> None:
    """A watch whose parent is watched is a (parent, name) node, not a root."""
    tree = build()
    assert [wd for wd, _ in tree.roots()] == [1]
    assert tree.is_root(1) and not tree.is_root(4)


def test_move_directory_then_resolve_deep_wd() -> None:
    """Renaming a directory re-parents one node: a deep watch below it gets the new path."""
    tree = build()
    assert tree.move(b"/srv/a", b"/srv/x/renamed")
    assert tree.path_of(4) == b"/srv/x/renamed/b/c"
    assert tree.wd_of(b"/srv/x/renamed/b/c") == 4
    assert tree.wd_of(b"/srv/a/b/c") is None
    assert tree.wd_of(b"/srv/a") is None
    assert len(tree) == 5


def test_move_unknown_source_is_reported() -> None:
    """move() of a path nobody watches changes nothing and returns False."""
    tree = build()
    assert not tree.move(b"/srv/nope", b"/srv/other")
    assert len(tree) == 5


def test_move_updates_nested_roots() -> None:
    """A root nested below a moved directory (its parent was unwatched) follows the move."""
    tree = WatchTree()
    tree.add(1, b"/srv")
    tree.add(2, b"/srv/a")
    tree.add(7, b"/srv/a/unwatched/deep")  # parent not watched: a root
    assert tree.is_root(7)
    tree.move(b"/srv/a", b"/srv/b")
    assert tree.path_of(7) == b"/srv/b/unwatched/deep"
    assert tree.wd_of(b"/srv/b/unwatched/deep") == 7


def test_remove_single_watch_orphans_children() -> None:
    """remove() forgets one wd; watches below it no longer resolve to a path."""
    tree = build()
    tree.remove(2)
    assert tree.path_of(2) is None
    assert tree.path_of(4) is None
    assert tree.wd_of(b"/srv/a") is None
    assert tree.path_of(5) == b"/srv/x"


def test_remove_tree_returns_exactly_the_wds_below() -> None:
    """remove_tree() returns and forgets the sub-tree's wds and keeps its siblings."""
    tree = build()
    tree.add(6, b"/srv/ab")  # a sibling whose name has the removed one as a prefix
    assert sorted(tree.remove_tree(b"/srv/a")) == [2, 3, 4]
    assert len(tree) == 3
    assert tree.path_of(6) == b"/srv/ab"
    assert tree.path_of(5) == b"/srv/x"
    assert tree.remove_tree(b"/srv/a") == []


def test_remove_tree_of_root_removes_everything() -> None:
    """Removing the root's tree empties the map."""
    tree = build()
    assert sorted(tree.remove_tree(b"/srv")) == [1, 2, 3, 4, 5]
    assert len(tree) == 0


def test_add_again_is_idempotent_and_replaces_moved_wd() -> None:
    """Re-adding the same wd at the same path changes nothing; at a new path it moves it."""
    tree = build()
    tree.add(3, b"/srv/a/b")
    assert len(tree) == 5
    tree.add(3, b"/srv/x/b")
    assert tree.path_of(4) == b"/srv/x/b/c"
    assert tree.wd_of(b"/srv/a/b") is None


def test_stale_wd_does_not_remove_newer_mapping() -> None:
    """When a new wd takes a name, dropping the old wd later keeps the new mapping."""
    tree = build()
    tree.add(8, b"/srv/a/b")  # b was replaced by a new directory before 3 was dropped
    assert tree.wd_of(b"/srv/a/b") == 8
    tree.remove(3)
    assert tree.wd_of(b"/srv/a/b") == 8
    assert tree.path_of(8) == b"/srv/a/b"


def test_filesystem_root_and_non_utf8_names() -> None:
    """Watching '/' itself works, and names are raw bytes."""
    tree = WatchTree()
    tree.add(1, b"/")
    tree.add(2, b"/caf\xe9")
    tree.add(3, b"/caf\xe9/\xff\xfe")
    assert tree.path_of(3) == b"/caf\xe9/\xff\xfe"
    assert tree.wd_of(b"/caf\xe9/\xff\xfe") == 3
    assert not tree.is_root(2)
