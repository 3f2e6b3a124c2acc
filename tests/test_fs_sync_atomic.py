"""The temp-file-and-rename helpers every backend shares."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fs_sync.atomic import AtomicFile, copy_fd, install, temp_prefix


def test_temp_is_a_hidden_sibling(tmp_path: Path) -> None:
    """The temporary file lives beside the destination, hidden, marked .fsm-."""
    local = os.fsencode(tmp_path / "index.html")
    with AtomicFile(local) as out:
        assert os.path.dirname(out.temp) == os.fsencode(tmp_path)
        assert os.path.basename(out.temp).startswith(b".index.html.fsm-")


def test_long_name_temp_fits(tmp_path: Path) -> None:
    """A 255-byte name still gets a temporary name the filesystem accepts."""
    local = os.fsencode(tmp_path) + b"/" + b"n" * 255
    with AtomicFile(local) as out:
        out.write(b"x")
        out.commit()
    assert Path(os.fsdecode(local)).read_bytes() == b"x"
    assert len(temp_prefix(local)[1]) < 255


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    """Leaving the block without commit removes the temporary file and keeps the old one."""
    local = tmp_path / "f"
    local.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFile(os.fsencode(local)) as out:
        out.write(b"half")
        raise RuntimeError("network went away")
    assert os.listdir(tmp_path) == ["f"]
    assert local.read_bytes() == b"old"


def test_commit_refuses_a_directory(tmp_path: Path) -> None:
    """commit() never renames over a directory; the temp file is removed."""
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError), AtomicFile(os.fsencode(tmp_path / "d")) as out:
        out.commit()
    assert os.listdir(tmp_path) == ["d"]


def test_copy_fd_streams(tmp_path: Path) -> None:
    """copy_fd copies a file of several blocks exactly."""
    src = tmp_path / "src"
    content = os.urandom(3 * (1 << 20) + 17)
    src.write_bytes(content)
    fd = os.open(src, os.O_RDONLY)
    try:
        copy_fd(fd, os.fsencode(tmp_path / "dst"))
    finally:
        os.close(fd)
    assert (tmp_path / "dst").read_bytes() == content


def test_install_across_filesystems(tmp_path: Path) -> None:
    """install() falls back to copy + rename when staging is on another filesystem."""
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        staged = os.path.join(os.fsencode(other), b"staged")
        with open(staged, "wb") as f:
            f.write(b"from staging")
        local = os.fsencode(tmp_path / "f")
        install(staged, local)
        assert Path(os.fsdecode(local)).read_bytes() == b"from staging"
    assert os.listdir(tmp_path) == ["f"]
