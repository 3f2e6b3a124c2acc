"""mirrord.service start-up and shutdown order: MemoryReactorClock, real inotify and BDB."""

from __future__ import annotations

import os
import socket

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from fs_info import store as identity_store
from fs_info.identity import Identity
from mirrord.service import makeService


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
        "progress.interval": 5.0,
        "batch": 100,
        "timeout": 60,
        "max-clients": 64,
        "port": 0,
        "bind": "127.0.0.1",
        "tls.cert": "",
        "tls.key": "",
        "control.socket": "",
        "ftp.port": 0,
        "metrics.port": 0,
        "metrics.bind": "127.0.0.1",
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
    service = makeService(config(datadir), reactor)
    globalLogPublisher.addObserver(observe)
    try:
        service.startService()  # the boot walk is scheduled, not yet run
        assert service.getServiceNamed("journal").journal.walker.jobs
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
    service = makeService({**config(datadir), "watch.max": 1}, reactor)
    service.startService()
    reactor.advance(0)
    assert service.ready.called and service.ready.result is None
    journal = service.getServiceNamed("journal")
    assert journal.monitor.polled_roots()
    try:
        poll = journal.poll()
        assert not poll.called  # its walks are scheduled, not yet run
        reactor.advance(0)
        assert poll.called
    finally:
        service.stopService()


def test_ready_datagram_comes_with_the_boot_finished_line(tmp_path, monkeypatch):
    """READY=1 reaches NOTIFY_SOCKET once, when 'boot init finished' is logged, not before."""
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))
    name = f"mirrord-test-{os.getpid()}-{os.urandom(4).hex()}"
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    said: list[str] = []
    reactor = MemoryReactorClock()
    service = makeService(config(datadir), reactor)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)

        def observe(event: dict) -> None:
            if "boot init finished" in event.get("log_format", ""):
                with pytest.raises(BlockingIOError):
                    sock.recv(64)  # the line comes first, then the datagram
                said.append(event["log_format"])

        globalLogPublisher.addObserver(observe)
        try:
            service.startService()
            with pytest.raises(BlockingIOError):
                sock.recv(64)  # the boot scan has not run: not ready
            reactor.advance(0)
            assert service.ready.called
            assert len(said) == 1
            assert sock.recv(64) == b"READY=1"
            assert sock.recv(128).startswith(b"STATUS=serving: ")  # the boot's progress ends
            with pytest.raises(BlockingIOError):
                sock.recv(64)
        finally:
            globalLogPublisher.removeObserver(observe)
            service.stopService()


def test_children_are_added_in_start_order(tmp_path):
    """The watchdog (alive from the start), store, watcher, journal, then after boot: the
    port, the control socket, the timers."""
    tree = tmp_path / "tree"
    tree.mkdir()
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))
    cfg = {**config(datadir), "poll.interval": 60, "rescan.interval": 600}
    service = makeService(cfg, MemoryReactorClock())
    assert [s.name for s in service] == ["watchdog", "store", "watcher", "journal", "after-boot"]
    after = service.getServiceNamed("after-boot")
    assert [s.name for s in after] == ["protocol", "control", "poll.interval", "rescan.interval"]
    with_metrics = makeService({**cfg, "metrics.port": 9123}, MemoryReactorClock())
    after = with_metrics.getServiceNamed("after-boot")
    assert [s.name for s in after] == [
        "protocol", "control", "metrics", "poll.interval", "rescan.interval"
    ]  # fmt: skip


def test_a_port_that_cannot_listen_fails_ready_and_nothing_after_it_starts(tmp_path):
    """A listener's failure fails ``ready`` with it; later children never start."""
    from twisted.internet.error import CannotListenError

    tree = tmp_path / "tree"
    tree.mkdir()
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))

    class BusyReactor(MemoryReactorClock):
        def listenTCP(self, port, factory, backlog=50, interface=""):  # noqa: N802
            raise CannotListenError(interface, port, OSError("in use"))

    reactor = BusyReactor()
    service = makeService(config(datadir), reactor)
    failures: list = []
    service.startService()
    service.ready.addErrback(failures.append)
    reactor.advance(0)
    try:
        assert failures and failures[0].check(CannotListenError)
        assert reactor.unixServers == []  # the control socket comes after the port
    finally:
        service.stopService()


def test_reconfigure_applies_live_keys_and_names_the_rest(tmp_path):
    """SIGHUP's new configuration: max-clients reaches the port's factory and poll.interval
    retimes its timer at once; cache.size is named in a warning, not applied; logging is set
    up again from the new configuration."""
    from cmdconfig import Config

    tree = tmp_path / "tree"
    tree.mkdir()
    datadir = str(tmp_path / "data")
    identity_store.save(os.fsencode(datadir), "default", Identity([os.fsencode(tree)], []))
    cfg = {**config(datadir), "poll.interval": 60, "auth.secret-from": ""}
    reactor = MemoryReactorClock()
    service = makeService(Config(cfg, {}, None), reactor)
    events: list[dict] = []
    relogged: list[Config] = []
    globalLogPublisher.addObserver(events.append)
    service.startService()
    try:
        reactor.advance(0)
        assert service.ready.called and service.ready.result is None
        new = Config({**cfg, "max-clients": 3, "poll.interval": 5, "cache.size": 16}, {}, "/c")
        service.reconfigure(new, relogged.append)
        assert relogged == [new]
        assert service.port.factory.max_clients == 3
        timer = service.getServiceNamed("after-boot").getServiceNamed("poll.interval")
        assert timer.interval == 5 and timer.loop.running
        assert service.config["max-clients"] == 3 and service.config["cache.size"] == 8
        warned = [e for e in events if e.get("key") == "cache.size"]
        assert warned and "next restart" in warned[0]["log_format"]
    finally:
        globalLogPublisher.removeObserver(events.append)
        service.stopService()
