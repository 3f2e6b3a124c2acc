"""Seeing staged files arrive (fs_sync/rsyncwatch.py): the parser on bytes, the watch on a real
directory."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from fs_sync.rsyncwatch import IN_MOVED_TO, IN_Q_OVERFLOW, MAX_DIRS, StagedWatch, parse_events


def _event(wd: int, mask: int, name: bytes, pad: int = 16) -> bytes:
    padded = name + b"\0" * (pad - len(name) % pad) if name else b""
    return struct.pack("=iIII", wd, mask, 0, len(padded)) + padded


def test_parse_events_reads_each_record_and_strips_padding() -> None:
    """Two records, names NUL-padded as the kernel does, one without a name."""
    data = _event(1, IN_MOVED_TO, b"f\nx") + _event(2, IN_Q_OVERFLOW, b"")
    assert list(parse_events(data)) == [(1, IN_MOVED_TO, b"f\nx"), (2, IN_Q_OVERFLOW, b"")]


def test_parse_events_ignores_a_truncated_tail_at_every_cut() -> None:
    """A cut anywhere yields only the whole records before it, never an error."""
    first, second = _event(1, IN_MOVED_TO, b"a"), _event(1, IN_MOVED_TO, b"bb")
    data = first + second
    for cut in range(len(data) + 1):
        expected = [(1, IN_MOVED_TO, b"a")] if cut >= len(first) else []
        if cut == len(data):
            expected.append((1, IN_MOVED_TO, b"bb"))
        assert list(parse_events(data[:cut])) == expected, cut


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
