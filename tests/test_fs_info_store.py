"""Tests for fs_info.store: the .t_files/.x_files list files, written atomically."""

from __future__ import annotations

import os

import pytest

from fs_info import store
from fs_info.identity import Identity


def test_save_writes_sorted_raw_lines(tmp_path):
    """save writes one raw path a line, sorted, into DATADIR/IDENTITY/."""
    ident = Identity([b"/var/www", b"/etc", b"/caf\xc3\xa9/\xff"], [b"/var/www/cache"])
    store.save(str(tmp_path), "system", ident)
    assert (tmp_path / "system" / ".t_files").read_bytes() == b"/caf\xc3\xa9/\xff\n/etc\n/var/www\n"
    assert (tmp_path / "system" / ".x_files").read_bytes() == b"/var/www/cache\n"
    assert sorted(os.listdir(tmp_path / "system")) == [".t_files", ".x_files"]  # no temp left


def test_round_trip(tmp_path):
    """load returns what save stored, byte for byte."""
    ident = Identity([b"/a", b"/\x01odd"], [b"/a/b"])
    store.save(os.fsencode(tmp_path), "www-1", ident)
    assert store.load(str(tmp_path), "www-1") == ident
    assert store.exists(str(tmp_path), "www-1")


def test_save_replaces_by_rename(tmp_path):
    """An update replaces the file by rename: a reader holding the old file keeps its content."""
    store.save(str(tmp_path), "system", Identity([b"/old"]))
    path = tmp_path / "system" / ".t_files"
    with open(path, "rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        store.save(str(tmp_path), "system", Identity([b"/new"]))
        assert old.read() == b"/old\n"
    assert path.read_bytes() == b"/new\n"
    assert path.stat().st_ino != inode


def test_missing_identity_is_empty(tmp_path):
    """A missing identity loads as empty, and exists() says it is missing."""
    assert store.load(str(tmp_path), "nobody") == Identity()
    assert not store.exists(str(tmp_path), "nobody")
    assert not store.load(str(tmp_path / "no-datadir"), "system")


def test_load_tolerates_blank_lines_and_comments(tmp_path):
    """Hand-edited files may have blank lines and # comments."""
    (tmp_path / "system").mkdir()
    (tmp_path / "system" / ".t_files").write_bytes(b"# mine\n\n/a/\n/b\n")
    assert store.load(str(tmp_path), "system") == Identity([b"/a", b"/b"])


def test_load_refuses_relative_lines(tmp_path):
    """A relative path in a list file is an error naming file:line."""
    (tmp_path / "system").mkdir()
    (tmp_path / "system" / ".x_files").write_bytes(b"/ok\nrelative\n")
    with pytest.raises(store.IdentityStoreError, match=r"\.x_files:2: not an absolute path"):
        store.load(str(tmp_path), "system")


def test_names_lists_identities(tmp_path):
    """names() lists the identities present, ignoring other entries."""
    store.save(str(tmp_path), "web", Identity([b"/w"]))
    store.save(str(tmp_path), "system", Identity([b"/s"]))
    (tmp_path / "empty").mkdir()
    (tmp_path / "__db.001").write_bytes(b"")
    assert store.names(str(tmp_path)) == ["system", "web"]
    assert store.names(str(tmp_path / "none")) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", ".hidden", "-x", "a b", "x\n", "é"])
def test_bad_identity_names(tmp_path, name):
    """An identity name must be one safe path component."""
    with pytest.raises(store.IdentityStoreError, match="bad identity name"):
        store.save(str(tmp_path), name, Identity([b"/a"]))


@pytest.mark.parametrize("name", ["system", "www-1", "a.b", "A_9", "host@x"])
def test_good_identity_names(name):
    """Ordinary names pass."""
    assert store.check_name(name) == name


def test_newline_paths_cannot_be_stored():
    """A path with a newline cannot be one line, so it is refused up front."""
    with pytest.raises(ValueError):
        Identity([b"/a\nb"])
