"""A batch bigger than one rsync run is split into several runs, all installed."""

from __future__ import annotations

import os
from pathlib import Path

from fs_sync.interface import FetchItem, Outcome
from fs_sync.rsync import RsyncFetcher
from tests.fetcher_contract import private_reactor, run_deferred
from tests.test_fs_sync_rsync import PASSWORD, USER, Daemon
from tests.test_fs_sync_rsync import daemon as daemon  # the module-scoped fixture


def test_batch_split_into_runs_keeps_order_and_outcomes(daemon: Daemon, tmp_path: Path) -> None:
    """Seven items over runs of two: each file installed, the missing one VANISHED, in order."""
    served = daemon.served + b"/runs"
    os.makedirs(served, exist_ok=True)
    names = [f"f{i}".encode() for i in range(7)]
    for name in names:
        if name != b"f3":
            with open(served + b"/" + name, "wb") as f:
                f.write(b"content " + name)
    dst = os.fsencode(tmp_path)
    items = [FetchItem(b"/runs/" + name, dst + b"/" + name) for name in names]
    with private_reactor() as reactor:
        fetcher = RsyncFetcher(
            "127.0.0.1", daemon.port, USER, PASSWORD, b"/mirror", daemon.staging, reactor, run_max=2
        )
        try:
            results = run_deferred(reactor, fetcher.fetch(items))
        finally:
            run_deferred(reactor, fetcher.close())
    assert [r[0] for r in results] == items
    outcomes = [r[1] for r in results]
    assert outcomes[3] is Outcome.VANISHED
    assert outcomes[:3] + outcomes[4:] == [Outcome.DONE] * 6
    for name in names:
        if name != b"f3":
            with open(dst + b"/" + name, "rb") as f:
                assert f.read() == b"content " + name
    assert os.listdir(daemon.staging) == []
