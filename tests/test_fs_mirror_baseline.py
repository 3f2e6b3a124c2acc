"""Report mode's baseline in a real Berkeley DB: following records, comparing a full sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from fs_mirror.baseline import Baseline, Entry, entry_of
from protocol.records import Action, Meta, Record

DIR = Meta(mode=0o755, uid=0, gid=0, mtime_ns=1_000_000_000)


def file_meta(size: int, mode: int = 0o644) -> Meta:
    return Meta(mode=mode, uid=33, gid=33, size=size, mtime_ns=2_000_000_000)


def d(path: bytes, meta: Meta = DIR) -> Record:
    return Record(Action.CREATE, path, meta=meta)


def f(path: bytes, size: int = 1, mode: int = 0o644) -> Record:
    return Record(Action.FWRITE, path, meta=file_meta(size, mode))


TREE = [d(b"/w"), d(b"/w/a"), f(b"/w/a/x"), f(b"/w/a/y"), Record(Action.SYMLINK, b"/w/l", b"a/x")]


@pytest.fixture
def base(tmp_path: Path):
    b = Baseline(bytes(tmp_path / "bl"))
    yield b
    b.close()


def full_sync(base: Baseline, records: list[Record], limit: int = 4096):
    """One whole full sync; returns (differences, gone paths)."""
    base.begin_full()
    diffs = base.add_full(records)
    gone, after = [], None
    while True:
        chunk, after = base.unseen(after, limit)
        gone += [path for path, _ in chunk]
        if after is None:
            break
    base.swap()
    return diffs, gone


def test_entry_round_trips() -> None:
    """An entry encodes and decodes whole, symlink target and digest included."""
    for entry in (
        Entry(Action.SYMLINK, b"t\tx%"),
        Entry(Action.FWRITE, None, file_meta(5), "ab" * 32),
        Entry(Action.CREATE, None, Meta(mode=0o700, unreadable=True)),
    ):
        assert Entry.decode(entry.encode()) == entry


def test_first_full_sync_is_the_baseline_without_differences(base: Baseline) -> None:
    """Before a baseline exists a full sync reports nothing and becomes it."""
    assert not base.exists
    diffs, gone = full_sync(base, TREE)
    assert (diffs, gone) == ([], [])
    assert base.exists and base.get(b"/w/a/x") == entry_of(TREE[2])


def test_later_full_sync_reports_only_the_differences(base: Baseline) -> None:
    """Created, changed and deleted entries, and nothing for unchanged ones or a dir's mtime."""
    full_sync(base, TREE)
    later = [
        d(b"/w", Meta(mode=0o755, uid=0, gid=0, mtime_ns=9_000_000_000)),  # mtime only
        f(b"/w/a/x", size=7),  # changed size
        f(b"/w/n"),  # new
        Record(Action.SYMLINK, b"/w/l", b"a/x"),
    ]  # /w/a and /w/a/y are gone
    diffs, gone = full_sync(base, later, limit=1)
    assert [(r.path, old is None) for r, old, _ in diffs] == [(b"/w/a/x", False), (b"/w/n", True)]
    assert gone == [b"/w/a", b"/w/a/y"]
    assert base.get(b"/w/a/y") is None and base.get(b"/w/n") is not None
    assert full_sync(base, later) == ([], [])  # the baseline is now the later sync


def test_entries_below_an_unreadable_directory_are_kept(base: Baseline) -> None:
    """mirrord sends nothing below an unreadable directory: what the baseline had stays."""
    full_sync(base, TREE)
    blind = [d(b"/w"), d(b"/w/a", Meta(mode=0o700, uid=0, gid=0, unreadable=True))]
    diffs, gone = full_sync(base, [*blind, Record(Action.SYMLINK, b"/w/l", b"a/x")])
    assert gone == [] and [r.path for r, _, _ in diffs] == [b"/w/a"]
    assert base.get(b"/w/a/y") is not None


def test_a_full_sync_cut_short_leaves_the_old_baseline(tmp_path: Path) -> None:
    """A crash mid-sync (no swap) leaves the previous baseline whole when reopened."""
    home = bytes(tmp_path / "bl")
    base = Baseline(home)
    full_sync(base, TREE)
    base.begin_full()
    base.add_full([d(b"/other")])
    base.flush()
    base.close()  # as a kill would: the half sync never swapped
    again = Baseline(home)
    try:
        assert again.exists and again.get(b"/w/a/y") is not None and again.get(b"/other") is None
        again.begin_full()  # the next one starts from an empty table
        diffs, gone = full_sync(again, TREE)
        assert (diffs, gone) == ([], [])
    finally:
        again.close()


def test_follow_keeps_the_baseline_current(base: Baseline) -> None:
    """Records of NEXT batches move, delete and change entries, whole sub-trees at once."""
    full_sync(base, TREE)
    base.follow(
        [
            Record(Action.ATTRIB, b"/w/a/x", meta=Meta(mode=0o600, uid=0, gid=0)),
            Record(Action.MOVE, b"/w/a", b"/w/b", meta=DIR),
            f(b"/w/new", size=3),
            Record(Action.DELETE, b"/w/l"),
        ]
    )
    x = base.get(b"/w/b/x")
    assert x is not None and x.meta.mode == 0o600 and x.meta.size == 1
    assert base.get(b"/w/a") is None and base.get(b"/w/a/x") is None
    assert base.get(b"/w/l") is None and base.get(b"/w/b/y") is not None
    base.follow([Record(Action.DELETE, b"/w/b")])
    assert base.get(b"/w/b") is None and base.get(b"/w/b/y") is None
    _, gone = full_sync(base, [d(b"/w"), f(b"/w/new", size=3)])
    assert gone == []  # the followed baseline is what the worker has


def test_follow_replayed_is_harmless(base: Baseline) -> None:
    """A batch applied twice (killed before its serial was saved) gives the same baseline."""
    full_sync(base, TREE)
    batch = [
        Record(Action.MOVE, b"/w/a/x", b"/w/z", meta=file_meta(1)),
        Record(Action.DELETE, b"/w/a/y"),
    ]
    base.follow(batch)
    base.follow(batch)  # the source is gone now: the MOVE's fields are all it knows
    z = base.get(b"/w/z")
    assert z is not None and z.action is Action.FWRITE and base.get(b"/w/a/x") is None
