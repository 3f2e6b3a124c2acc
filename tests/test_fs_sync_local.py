"""The local backend against real directories, plus its own edge cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fs_sync.interface import FetchItem, Outcome
from fs_sync.local import LocalFetcher
from tests.fetcher_contract import Backend, FetcherContract, private_reactor, run_deferred


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    served = os.fsencode(tmp_path / "served")
    os.mkdir(served)
    root = served
    return Backend(
        served=served,
        remote_of=lambda path: path[len(root) :],  # root + remote == path
        make=lambda reactor: LocalFetcher(root, reactor),
    )


class TestLocalContract(FetcherContract):
    """The shared contract for `local`."""

    def test_symlink_is_not_a_file(self) -> None:
        """A symlink where a file was expected is NOT_A_FILE, never followed."""
        self.source(b"real", b"secret")
        os.symlink(b"real", os.path.join(self.src, b"link"))
        [(_, outcome, _)] = self.fetch(self.item(b"link"))
        assert outcome is Outcome.NOT_A_FILE
        assert not os.path.lexists(os.path.join(self.dst, b"link"))

    def test_symlinked_directory_on_the_worker_side_is_never_followed(self) -> None:
        """``FWRITE:/w/srclink/canary`` with ``srclink`` an absolute symlink out of the
        root copies nothing: on an NFS mount of the worker that link resolves on
        the backup host, and would pull the backup host's own files in (issue 9)."""
        outside = os.path.join(os.path.dirname(self.src), b"backup-host-etc")
        os.mkdir(outside)
        with open(os.path.join(outside, b"canary"), "wb") as f:
            f.write(b"backup host secret")
        os.symlink(outside, os.path.join(self.src, b"srclink"))
        os.makedirs(os.path.join(self.dst, b"srclink"), exist_ok=True)  # the mirror's side is fine
        [(_, outcome, _)] = self.fetch(self.item(b"srclink/canary"))
        assert outcome is Outcome.NOT_A_FILE
        assert not os.path.lexists(os.path.join(self.dst, b"srclink/canary"))

    def test_fifo_is_not_a_file(self) -> None:
        """A FIFO is NOT_A_FILE and does not hang the copy."""
        os.mkfifo(os.path.join(self.src, b"pipe"))
        [(_, outcome, _)] = self.fetch(self.item(b"pipe"))
        assert outcome is Outcome.NOT_A_FILE

    def test_missing_parent_fails(self) -> None:
        """A destination whose parent is missing FAILS without leaving anything."""
        self.source(b"f", b"x")
        local = os.path.join(self.dst, b"nodir", b"f")
        item = FetchItem(self.item(b"f").remote, local)
        [(_, outcome, _)] = run_deferred(self.reactor, self.fetcher.fetch([item]))
        assert outcome is Outcome.FAILED


def test_a_batch_spread_over_threads_keeps_the_order_and_each_path_once(tmp_path):
    """Results come back in the items' order, whichever thread copied each file."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    names = [b"f%03d" % i for i in range(200)]
    for name in names:
        (src / name.decode()).write_bytes(name)
    items = [FetchItem(os.fsencode(src) + b"/" + n, os.fsencode(dst) + b"/" + n) for n in names]
    items.append(items[0])  # asked twice: same share, so never copied by two threads at once
    with private_reactor() as reactor:
        fetcher = LocalFetcher(b"", reactor, threads=4)
        results = run_deferred(reactor, fetcher.fetch(items))
        run_deferred(reactor, fetcher.close())
    assert [r[0] for r in results] == items
    assert [r[1] for r in results] == [Outcome.DONE] * len(items)
    assert all((dst / n.decode()).read_bytes() == n for n in names)
