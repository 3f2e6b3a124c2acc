"""The one writer of state files: whole old or whole new content, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmdconfig.atomic import replace_file, replace_locked


def test_replace_file_writes_and_replaces(tmp_path: Path) -> None:
    """The file holds exactly the new data, with the mode asked for; no temporary remains."""
    target = tmp_path / "state"
    replace_file(os.fsencode(target), b"one\n", 0o644)
    replace_file(str(target), b"two\n", 0o600, durable=False)
    assert target.read_bytes() == b"two\n"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["state"]


def test_replace_keeps_a_hard_link_to_the_old_file(tmp_path: Path) -> None:
    """Renaming a new inode into place never writes through a link to the old one."""
    target = tmp_path / "state"
    target.write_bytes(b"old")
    os.link(target, tmp_path / "backup")
    replace_file(str(target), b"new")
    assert (tmp_path / "backup").read_bytes() == b"old"
    assert target.read_bytes() == b"new"


def test_temporary_goes_to_tmpdir(tmp_path: Path) -> None:
    """With tmpdir the temporary never appears beside the target, also when the rename fails."""
    (tmp_path / "scratch").mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_bytes(b"x")
    replace_file(str(tmp_path / "target"), b"x", tmpdir=str(tmp_path / "scratch"))
    assert sorted(os.listdir(tmp_path)) == ["dir", "scratch", "target"]
    with pytest.raises(OSError):  # a non-empty directory cannot be renamed over
        replace_file(str(tmp_path / "dir"), b"x", tmpdir=str(tmp_path / "scratch"))
    assert os.listdir(tmp_path / "scratch") == []
    assert (tmp_path / "dir" / "inside").exists()


def test_replace_locked_is_locked_before_it_appears(tmp_path: Path) -> None:
    """The returned descriptor holds an fcntl lock on the new file, seen from another process."""
    target = tmp_path / "sn"
    fd = replace_locked(str(target), b"a,1\n", 0o644)
    try:
        assert os.pread(fd, 16, 0) == b"a,1\n"
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "try:\n"
                "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                "except OSError:\n"
                "    print('locked')\n",
                str(target),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.stdout.strip() == "locked"
    finally:
        os.close(fd)
