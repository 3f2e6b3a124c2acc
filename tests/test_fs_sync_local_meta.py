"""The local backend copies like `cp -p`: permission bits and mtime, never set-id bits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fs_sync.interface import FetchItem, Outcome
from fs_sync.local import fetch_one


def test_copy_keeps_mode_and_mtime(tmp_path: Path):
    """A fetched file has the source's permission bits and mtime before any record says so."""
    src = tmp_path / "worker" / "tool"
    src.parent.mkdir()
    src.write_bytes(b"#!/bin/sh\n")
    os.chmod(src, 0o751)
    os.utime(src, ns=(1_000_000_000_000_000_000, 1_500_000_000_123_456_789))
    dst = tmp_path / "tool"
    item = FetchItem(remote=os.fsencode(src), local=os.fsencode(dst))
    assert fetch_one(b"", item)[1] is Outcome.DONE
    st = os.lstat(dst)
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    assert dst.read_bytes() == b"#!/bin/sh\n"


def test_set_id_bits_are_not_copied(tmp_path: Path):
    """A setuid source gives a plain copy: our temporary file is not the source owner's."""
    src = tmp_path / "suid"
    src.write_bytes(b"x")
    os.chmod(src, 0o4755)
    dst = tmp_path / "copy"
    assert fetch_one(b"", FetchItem(os.fsencode(src), os.fsencode(dst)))[1] is Outcome.DONE
    assert stat.S_IMODE(os.lstat(dst).st_mode) == 0o755
