"""mirrord.service start-up and shutdown order: MemoryReactorClock, real inotify and BDB."""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from fs_info import store as identity_store
from fs_info.identity import Identity
from mirrord.service import MirrordService


def config(datadir: str) -> dict:
    return {
        "datadir": datadir,
        "identities": ["default"],
        "cache.size": 8,
        "loglen": 1000,
        "watch.max": 0,
        "move.wait": 0.1,
        "poll.interval": 0,
        "rescan.interval": 0,
        "batch": 100,
        "timeout": 60,
        "port": 0,
        "bind": "127.0.0.1",
        "tls.cert": "",
        "tls.key": "",
        "control.socket": "",
        "ftp.port": 0,
    }


def test_stop_during_boot_scan_ends_the_walk_and_never_listens(tmp_path):
    """Stopped mid boot scan: the walk ends without touching the closed store; no listener."""
    tree = tmp_path / "tree"
    for d in range(3):
        (tree / f"d{d}").mkdir(parents=True)
        (tree / f"d{d}" / "f").touch()
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))
    failures: list[dict] = []

    def observe(event: dict) -> None:
        if "log_failure" in event:
            failures.append(event)

    reactor = MemoryReactorClock()
    service = MirrordService(config(datadir), reactor)
    globalLogPublisher.addObserver(observe)
    try:
        service.startService()  # the boot walk is scheduled, not yet run
        assert service.journal.walker.jobs
        stopped = service.stopService()
        for _ in range(100):
            reactor.advance(0)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert stopped.called and not service.running
    assert not failures, [f["log_failure"].getTraceback() for f in failures]
    assert reactor.tcpServers == [] and reactor.unixServers == []
    assert not reactor.getDelayedCalls()


def test_poll_waits_for_its_walks_so_polls_never_pile_up(tmp_path):
    """A poll returns its walks' Deferred: the LoopingCall starts no new poll until they end."""
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))
    reactor = MemoryReactorClock()
    service = MirrordService({**config(datadir), "watch.max": 1}, reactor)
    service.startService()
    reactor.advance(0)
    assert service.ready.called and service.ready.result is None
    assert service.monitor.polled_roots()
    try:
        poll = service._poll()
        assert not poll.called  # its walks are scheduled, not yet run
        reactor.advance(0)
        assert poll.called
    finally:
        service.stopService()
