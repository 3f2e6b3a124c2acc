"""Seeing staged files arrive (fs_sync/rsyncwatch.py) in a real directory; the records' parser
is fs_sync.inotify's (tests/test_fs_sync_inotify.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fs_sync.rsyncwatch import MAX_DIRS, StagedWatch


def _stage(directory: bytes, name: bytes) -> None:
    """What rsync does: write a temporary name, then rename it to the final one."""
    temp = directory + b"/." + name + b".XXXX"
    with open(temp, "wb") as f:
        f.write(b"x")
    os.rename(temp, directory + b"/" + name)


def test_watch_is_done_once_every_name_is_renamed_into_place(tmp_path: Path) -> None:
    """Names in nested directories (made by the watch) count only once renamed there."""
    staging = os.fsencode(tmp_path)
    watch = StagedWatch(staging, [b"top", b"a/b/one", b"a/b/two", b"a/b/one"])
    try:
        assert os.path.isdir(staging + b"/a/b")
        assert not watch.read()
        _stage(staging, b"top")
        _stage(staging + b"/a/b", b"one")
        assert not watch.read()
        with open(staging + b"/a/b/two", "wb") as f:  # written in place: not rsync's rename
            f.write(b"y")
        assert not watch.read()
        os.unlink(staging + b"/a/b/two")
        _stage(staging + b"/a/b", b"two")
        assert watch.read()
    finally:
        watch.close()


def test_watch_one_directory_under_two_spellings(tmp_path: Path) -> None:
    """`a/x` and `a//y` name one directory: both names are still awaited."""
    staging = os.fsencode(tmp_path)
    watch = StagedWatch(staging, [b"a/x", b"a//y"])
    try:
        _stage(staging + b"/a", b"x")
        assert not watch.read()
        _stage(staging + b"/a", b"y")
        assert watch.read()
    finally:
        watch.close()


def test_watch_refuses_too_many_directories(tmp_path: Path) -> None:
    """A run spread over more than MAX_DIRS directories is left to end at its summary."""
    with pytest.raises(ValueError):
        StagedWatch(os.fsencode(tmp_path), [b"d%d/f" % i for i in range(MAX_DIRS + 1)])
    assert os.listdir(tmp_path) == []


def test_watch_tells_each_name_staged_once_as_it_was_given(tmp_path: Path) -> None:
    """Names come back as they arrive, spelled as in the list, each once."""
    staging = os.fsencode(tmp_path)
    watch = StagedWatch(staging, [b"a/x", b"a//y", b"z"])
    try:
        _stage(staging + b"/a", b"x")
        assert not watch.read()
        assert watch.take_arrived() == [b"a/x"]
        _stage(staging + b"/a", b"y")
        _stage(staging, b"z")
        _stage(staging + b"/a", b"x")  # again: not a name still awaited
        assert watch.read()
        assert sorted(watch.take_arrived()) == [b"a//y", b"z"]
        assert watch.take_arrived() == []
    finally:
        watch.close()
