"""Config keys to backends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fs_sync.ftp import FtpFetcher
from fs_sync.local import LocalFetcher
from fs_sync.registry import make_fetcher
from fs_sync.rsync import RsyncFetcher
from tests.fetcher_contract import private_reactor, run_deferred


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


def build(cfg: dict[str, Any], **kw: Any) -> Any:
    with private_reactor() as reactor:
        fetcher = make_fetcher(cfg, reactor, b"pw", **kw)
        if fetcher is not None:
            run_deferred(reactor, fetcher.close())
    return fetcher


def test_local_uses_root() -> None:
    """`local` reads below fssync.root (trailing slash ignored)."""
    fetcher = build(config("local", **{"fssync.root": "/mnt/worker/"}))
    assert isinstance(fetcher, LocalFetcher)
    assert fetcher.root == b"/mnt/worker"


def test_ftp_defaults() -> None:
    """`ftp` connects to host on port 21 as anonymous unless told otherwise."""
    fetcher = build(config("ftp"))
    assert isinstance(fetcher, FtpFetcher)
    assert (fetcher.host, fetcher.port, fetcher.user) == ("worker.example", 21, "anonymous")
    custom = build(config("ftp", **{"fssync.user": "m", "fssync.port": 2121}))
    assert (custom.port, custom.user) == (2121, "m")


def test_rsync_stages_in_datadir(tmp_path: Path) -> None:
    """`rsync` defaults to port 873 and stages under the mirror's datadir."""
    fetcher = build(config("rsync", datadir=str(tmp_path), **{"fssync.root": "/mirror"}))
    assert isinstance(fetcher, RsyncFetcher)
    assert fetcher.port == 873 and fetcher.root == b"/mirror"
    assert fetcher.staging_dir == os.fsencode(tmp_path) + b"/.fs_mirror-staging"
    explicit = build(config("rsync"), staging_dir=b"/x/stage")
    assert explicit.staging_dir == b"/x/stage"


def test_rsync_without_staging_is_an_error() -> None:
    """`rsync` with no datadir and no staging dir names what is missing."""
    with pytest.raises(ValueError, match="datadir"):
        build(config("rsync"))


def test_report_is_not_a_fetcher() -> None:
    """`report` builds no fetcher."""
    assert build(config("report")) is None


def test_unknown_type_names_the_key() -> None:
    """An unknown backend is an error naming fssync.type."""
    with pytest.raises(ValueError, match="fssync.type"):
        build(config("scp"))
