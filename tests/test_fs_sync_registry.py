"""Backend specs to backends."""

from __future__ import annotations

from typing import Any

import pytest

from fs_sync.ftp import FtpFetcher
from fs_sync.local import LocalFetcher
from fs_sync.registry import BackendSpec, make_fetcher
from fs_sync.rsync import RsyncFetcher
from tests.fetcher_contract import private_reactor, run_deferred


def build(spec: BackendSpec) -> Any:
    with private_reactor() as reactor:
        fetcher = make_fetcher(spec, reactor)
        run_deferred(reactor, fetcher.close())
    return fetcher


def test_local_uses_root() -> None:
    """`local` reads below the spec's root (trailing slash ignored)."""
    fetcher = build(BackendSpec("local", root=b"/mnt/worker/"))
    assert isinstance(fetcher, LocalFetcher)
    assert fetcher.root == b"/mnt/worker"


def test_ftp_defaults() -> None:
    """`ftp` connects to host on port 21 as anonymous unless told otherwise."""
    fetcher = build(BackendSpec("ftp", host="worker.example"))
    assert isinstance(fetcher, FtpFetcher)
    assert (fetcher.host, fetcher.port, fetcher.user) == ("worker.example", 21, "anonymous")
    custom = build(BackendSpec("ftp", host="worker.example", user="m", port=2121))
    assert (custom.port, custom.user) == (2121, "m")


def test_rsync_stages_where_the_caller_says() -> None:
    """`rsync` defaults to port 873 and stages in the caller's staging directory."""
    spec = BackendSpec("rsync", root=b"/mirror", staging_dir=b"/x/stage")
    fetcher = build(spec)
    assert isinstance(fetcher, RsyncFetcher)
    assert fetcher.port == 873 and fetcher.root == b"/mirror"
    assert fetcher.staging_dir == b"/x/stage"


def test_rsync_without_staging_is_an_error() -> None:
    """An `rsync` spec with no staging directory is refused, saying what is missing."""
    with pytest.raises(ValueError, match="staging"):
        BackendSpec("rsync")


def test_unknown_kind_is_refused() -> None:
    """An unknown backend kind is refused, naming it and the known ones."""
    with pytest.raises(ValueError, match="'scp'.*ftp, rsync, local"):
        BackendSpec("scp")


def test_spec_is_a_frozen_value() -> None:
    """A spec cannot be changed once built, and equal specs compare equal."""
    spec = BackendSpec("local", root=b"/m")
    with pytest.raises(AttributeError):
        spec.root = b"/other"
    assert spec == BackendSpec("local", root=b"/m")
