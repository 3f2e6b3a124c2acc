"""fs_mirror's fssync.* keys to the spec of an fs_sync backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fs_mirror.backend import backend_spec, scratch_dirs
from fs_sync.registry import BackendSpec


def config(kind: str, **extra: Any) -> dict[str, Any]:
    base = {
        "host": "worker.example",
        "fssync.type": kind,
        "fssync.user": None,
        "fssync.port": None,
        "fssync.root": "",
    }
    base.update(extra)
    return base


def spec(cfg: dict[str, Any]) -> BackendSpec | None:
    return backend_spec(cfg, b"pw", rsync_staging=b"/d/.fs_mirror.d/rsync", tmpdir=b"/d/tmp")


def test_keys_become_the_spec() -> None:
    """host, fssync.root/user/port and the password land in the spec; no per-file fsync."""
    got = spec(config("ftp", **{"fssync.root": "/w", "fssync.user": "m", "fssync.port": 2121}))
    assert got == BackendSpec(
        "ftp",
        root=b"/w",
        host="worker.example",
        port=2121,
        user="m",
        password=b"pw",
        staging_dir=b"/d/.fs_mirror.d/rsync",
        tmpdir=b"/d/tmp",
        fsync=False,
    )


def test_unset_keys_leave_the_backend_defaults() -> None:
    """No fssync.port or fssync.user: the spec says 0 and None (the backend's defaults)."""
    got = spec(config("rsync"))
    assert got is not None and (got.port, got.user, got.root) == (0, None, b"")


def test_report_is_not_a_fetcher() -> None:
    """`report` builds no backend spec."""
    assert spec(config("report")) is None


def test_unknown_type_names_the_key() -> None:
    """An unknown backend is an error naming fssync.type."""
    with pytest.raises(ValueError, match="fssync.type"):
        spec(config("scp"))


def test_scratch_dirs_are_emptied_and_made(tmp_path: Path) -> None:
    """What a killed run left in the scratch directories is removed; tmp exists, 0700."""
    staging = os.fsencode(tmp_path)
    (tmp_path / "rsync").mkdir()
    (tmp_path / "rsync" / "half").write_bytes(b"x")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "fetch-1").write_bytes(b"x")
    rsync, tmpdir = scratch_dirs(staging)
    assert (rsync, tmpdir) == (staging + b"/rsync", staging + b"/tmp")
    assert not os.path.exists(rsync)
    assert os.listdir(tmpdir) == []
    assert os.stat(tmpdir).st_mode & 0o777 == 0o700
