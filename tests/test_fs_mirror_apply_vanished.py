"""A MOVE whose source vanished before its fetch gets the metadata its FWRITE carried."""

from __future__ import annotations

import os
import stat

import pytest

from fs_mirror.apply import VANISHED_KEPT
from protocol.records import Action
from tests.test_apply import R, make, put, read, run


@pytest.fixture
def dirs(tmp_path):
    worker, mirror = os.fsencode(tmp_path / "worker"), os.fsencode(tmp_path / "mirror")
    os.mkdir(worker)
    os.mkdir(mirror)
    return worker, mirror


def mode_of(root: bytes, path: bytes) -> int:
    return stat.S_IMODE(os.lstat(root + path).st_mode)


def test_move_after_vanished_fetch_keeps_mode_and_mtime(dirs):
    """FWRITE vanished in one batch, MOVE (no fields) in the next: the fetch gets mode, mtime."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    os.makedirs(worker + b"/srv")
    mtime = 1_600_000_000_500_000_000
    run(applier, [R(Action.FWRITE, b"/srv/a", mode=0o640, mtime_ns=mtime)])  # a is gone
    put(worker, b"/srv/b", b"moved")
    run(applier, [R(Action.MOVE, b"/srv/a", b"/srv/b")])
    assert read(mirror, b"/srv/b") == b"moved"
    assert mode_of(mirror, b"/srv/b") == 0o640
    assert os.lstat(mirror + b"/srv/b").st_mtime_ns == mtime


def test_attrib_of_a_vanished_file_updates_what_a_move_gets(dirs):
    """An ATTRIB between the vanished FWRITE and the MOVE changes the mode the MOVE applies."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    run(applier, [R(Action.FWRITE, b"/a", mode=0o644)])
    run(applier, [R(Action.ATTRIB, b"/a", mode=0o600)])
    put(worker, b"/b", b"x")
    run(applier, [R(Action.MOVE, b"/a", b"/b")])
    assert mode_of(mirror, b"/b") == 0o600


def test_a_later_record_for_the_path_forgets_the_vanished_metadata(dirs):
    """A DELETE of the vanished path means a later MOVE from it knows nothing stale."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    run(applier, [R(Action.FWRITE, b"/a", mode=0o604)])
    run(applier, [R(Action.DELETE, b"/a")])
    put(worker, b"/b", b"x")
    run(applier, [R(Action.MOVE, b"/a", b"/b")])
    assert mode_of(mirror, b"/b") != 0o604  # the fetcher's own default, not the stale mode


def test_vanished_memory_is_bounded(dirs):
    """Only the latest VANISHED_KEPT vanished files are remembered."""
    applier, _ = make(dirs)
    records = [R(Action.FWRITE, b"/v%d" % i, mode=0o600) for i in range(VANISHED_KEPT + 10)]
    run(applier, records)
    assert len(applier._vanished) == VANISHED_KEPT
    assert b"/v0" not in applier._vanished and b"/v%d" % (VANISHED_KEPT + 9) in applier._vanished
