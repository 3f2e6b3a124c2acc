"""The Applier's per-batch cache of real parent directories is never trusted
after a record that could have turned one of them into a symlink."""

from __future__ import annotations

import os

import pytest

from protocol.records import Action
from tests.test_apply import R, make, put, read, run


@pytest.fixture
def dirs(tmp_path):
    worker, mirror = os.fsencode(tmp_path / "worker"), os.fsencode(tmp_path / "mirror")
    os.mkdir(worker)
    os.mkdir(mirror)
    return worker, mirror


@pytest.fixture
def outside(tmp_path):
    path = os.fsencode(tmp_path / "outside")
    os.mkdir(path)
    return path


def test_symlink_in_batch_invalidates_known_parent(dirs, outside):
    """A directory seen real, then replaced by a symlink in the same batch, is refused after."""
    worker, _ = dirs
    put(worker, b"/d/a", b"a")
    put(worker, b"/d/b", b"evil")
    a, fetcher = make(dirs)
    batch = [
        R(Action.CREATE, b"/d"),
        R(Action.FWRITE, b"/d/a"),
        R(Action.SYMLINK, b"/d", outside),
        R(Action.FWRITE, b"/d/b"),
    ]
    assert run(a, batch).refused == 1  # refused and skipped, never written through
    assert os.listdir(outside) == [] and fetcher.calls == []


def test_move_of_symlink_over_known_parent_invalidates_it(dirs, outside):
    """A symlink moved over a directory seen real in the batch makes writes under it hostile."""
    worker, mirror = dirs
    put(worker, b"/d/a", b"a")
    put(worker, b"/d/b", b"evil")
    a, fetcher = make(dirs)
    run(a, [R(Action.SYMLINK, b"/lnk", outside)])
    batch = [
        R(Action.CREATE, b"/d"),
        R(Action.FWRITE, b"/d/a"),
        R(Action.MOVE, b"/lnk", b"/d"),
        R(Action.FWRITE, b"/d/b"),
    ]
    assert run(a, batch).refused == 1  # refused and skipped, never written through
    assert os.listdir(outside) == [] and fetcher.calls == []
    assert os.readlink(mirror + b"/d") == outside


def test_delete_of_known_parent_then_write_recreates_it(dirs):
    """After a DELETE of a directory seen in the batch, a write under it makes it again."""
    worker, mirror = dirs
    put(worker, b"/d/e/b", b"bee")
    a, _ = make(dirs)
    run(
        a,
        [
            R(Action.CREATE, b"/d/e"),
            R(Action.CREATE, b"/d/e/x"),
            R(Action.DELETE, b"/d"),
            R(Action.FWRITE, b"/d/e/b"),
        ],
    )
    assert read(mirror, b"/d/e/b") == b"bee" and not os.path.islink(mirror + b"/d")
    assert os.listdir(mirror + b"/d/e") == [b"b"]


def test_cache_does_not_outlive_the_batch(dirs, outside):
    """A parent seen real in one batch is checked again in the next one."""
    worker, mirror = dirs
    put(worker, b"/d/a", b"a")
    a, fetcher = make(dirs)
    run(a, [R(Action.CREATE, b"/d"), R(Action.FWRITE, b"/d/a")])
    os.rename(mirror + b"/d", mirror + b"/old")
    os.symlink(outside, mirror + b"/d")  # changed between batches
    assert run(a, [R(Action.FWRITE, b"/d/a")]).refused == 1
    assert os.listdir(outside) == [] and len(fetcher.calls) == 1
