"""mirrord.values: the one entry -> record mapping, and the values' own small rules."""

from __future__ import annotations

import pytest

from mirrord.diff import diff
from mirrord.initstream import snapshot_line
from mirrord.paths import overlaps, parent_path
from mirrord.values import DIR, FILE, LINK, Dirty, Entry, record_of
from protocol.records import Action, Meta, Record


def E(kind: bytes = FILE, unreadable: bool = False, target: bytes = b"") -> Entry:
    size = 42 if kind == FILE else 0
    return Entry(kind, 0o4750, 7, 8, size, 1_500_000_000, 9, target, unreadable)


def test_record_of_each_kind():
    """A directory is a CREATE without size, a file an FWRITE with size, a link a SYMLINK."""
    assert record_of(b"/d", E(DIR, unreadable=True)) == Record(
        Action.CREATE,
        b"/d",
        meta=Meta(mode=0o4750, uid=7, gid=8, mtime_ns=1_500_000_000, unreadable=True),
    )
    assert record_of(b"/f", E()) == Record(
        Action.FWRITE, b"/f", meta=Meta(mode=0o4750, uid=7, gid=8, size=42, mtime_ns=1_500_000_000)
    )
    assert record_of(b"/l", E(LINK, target=b"t")) == Record(Action.SYMLINK, b"/l", target=b"t")


@pytest.mark.parametrize("entry", [E(DIR), E(DIR, unreadable=True), E(), E(LINK, target=b"x")])
def test_init_line_and_diff_of_a_new_entry_are_the_same_record(entry):
    """The INIT stream and the scanner's diff of a new path tell a client the same thing."""
    assert snapshot_line(b"/p", entry) == record_of(b"/p", entry).encode()
    assert diff(b"/p", None, entry) == [record_of(b"/p", entry)]


def test_dirty_merge_ors_flags_and_ands_present():
    """Two tellings of one path: recursive and written add up, one delete says it is gone."""
    merged = Dirty(b"/a", recursive=True, present=True).merged(False, True, False)
    assert merged == Dirty(b"/a", recursive=True, written=True, present=False)


def test_overlaps_is_by_whole_components_and_root_covers_all():
    """/a/cache never overlaps /a/cache2; / overlaps everything; parent of / is /."""
    assert overlaps(b"/a/cache", b"/a/cache/x") and overlaps(b"/a/cache/x", b"/a/cache")
    assert not overlaps(b"/a/cache", b"/a/cache2")
    assert overlaps(b"/", b"/x") and overlaps(b"/x", b"/")
    assert parent_path(b"/") == b"/" and parent_path(b"/a") == b"/"
