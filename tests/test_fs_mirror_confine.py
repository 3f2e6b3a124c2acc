"""Confinement: worker paths map under the datadir and never leave it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fs_mirror.confine import Confinement, HostilePath, ReservedPath


def test_a_symlinked_parent_is_refused(tmp_path: Path) -> None:
    """A path through a symlink that exists in the mirror is hostile, even once forgotten."""
    root = os.fsencode(tmp_path)
    (tmp_path / "real").mkdir()
    os.symlink("/", tmp_path / "link")
    paths = Confinement(root)
    assert paths.local(b"/real/f") == root + b"/real/f"
    with pytest.raises(HostilePath):
        paths.local(b"/link/etc/passwd")
    with pytest.raises(ReservedPath):
        paths.local(b"/sn")


def test_make_parents_turns_a_file_in_the_way_into_a_directory(tmp_path: Path) -> None:
    """Missing parents are made; a file where a directory belongs is replaced and named."""
    root = os.fsencode(tmp_path)
    (tmp_path / "a").write_bytes(b"was a file")
    paths = Confinement(root)
    local = paths.local(b"/a/b/c")
    assert paths.make_parents(local) == [b"/a"]
    assert (tmp_path / "a" / "b").is_dir()
    assert paths.make_parents(local) == []


def test_forget_tree_distrusts_what_was_learnt_below_a_replaced_directory(tmp_path: Path) -> None:
    """a/b learnt real, then replaced by a symlink (a SYMLINK record): forgetting a/b
    alone must be enough for a path through it to be refused."""
    datadir = os.fsencode(tmp_path / "mirror")
    os.makedirs(datadir + b"/a/b/c")
    confinement = Confinement(datadir)
    assert confinement.local(b"/a/b/c/x") == datadir + b"/a/b/c/x"  # a, a/b, a/b/c learnt
    os.rename(datadir + b"/a/b", datadir + b"/old")
    os.symlink(tmp_path, datadir + b"/a/b")
    confinement.forget_tree(datadir + b"/a/b")
    with pytest.raises(HostilePath, match="symlink"):
        confinement.local(b"/a/b/c/x")


def test_forget_tree_reaches_directories_made_below_an_unlearnt_one(tmp_path: Path) -> None:
    """make_parents learns only what it makes (b and c under an existing a): a delete
    of a must still drop them, or the next file under a/b/c finds no parents made."""
    datadir = os.fsencode(tmp_path / "mirror")
    os.makedirs(datadir + b"/a")
    confinement = Confinement(datadir)
    confinement.make_parents(confinement.local(b"/a/b/c/x"))
    assert os.path.isdir(datadir + b"/a/b/c")
    os.rmdir(datadir + b"/a/b/c")
    os.rmdir(datadir + b"/a/b")  # a DELETE of a/b
    confinement.forget_tree(datadir + b"/a/b")
    confinement.make_parents(confinement.local(b"/a/b/c/y"))
    assert os.path.isdir(datadir + b"/a/b/c")
    shutil.rmtree(datadir + b"/a")  # a DELETE of a, which was never learnt itself
    confinement.forget_tree(datadir + b"/a")
    os.makedirs(datadir + b"/a")
    confinement.make_parents(confinement.local(b"/a/b/c/z"))
    assert os.path.isdir(datadir + b"/a/b/c")
