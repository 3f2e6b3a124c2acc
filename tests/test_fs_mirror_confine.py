"""Confinement: worker paths map under the datadir and never leave it."""

from __future__ import annotations

import os
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
