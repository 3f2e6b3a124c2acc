"""The rsync backend against a real `rsync --daemon` on 127.0.0.1.

The daemon requires a user and password (auth users + secrets file), so
every contract test also proves the RSYNC_PASSWORD path.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fs_sync.interface import FetchItem, Outcome
from fs_sync.rsync import RsyncFetcher, build_argv, daemon_url, split_module
from tests.fetcher_contract import Backend, FetcherContract, run_deferred
from tests.helpers import free_port, wait_for

USER, PASSWORD = "fsm", b"s3cret-pw"


@dataclass
class Daemon:
    served: bytes
    port: int
    staging: bytes


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("rsyncd")
    served = base / "served"
    served.mkdir()
    secrets = base / "secrets"
    secrets.write_text(f"{USER}:{PASSWORD.decode()}\n")
    secrets.chmod(0o600)
    conf = base / "rsyncd.conf"
    conf.write_text(
        f"pid file = {base}/rsyncd.pid\n"
        f"log file = {base}/rsyncd.log\n"
        "use chroot = no\n"
        f"[mirror]\n  path = {served}\n  read only = yes\n  uid = root\n  gid = root\n"
        f"  auth users = {USER}\n  secrets file = {secrets}\n  strict modes = yes\n"
    )
    port = free_port()
    argv = ["rsync", "--daemon", "--no-detach", "--address=127.0.0.1", f"--port={port}"]
    proc = subprocess.Popen([*argv, f"--config={conf}"])
    try:
        wait_for(lambda: _accepting(port), message="rsync daemon to listen")
        staging = os.fsencode(base / "staging")
        yield Daemon(os.fsencode(served), port, staging)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def backend(daemon: Daemon) -> Backend:
    def make(reactor: object) -> RsyncFetcher:
        return RsyncFetcher(
            "127.0.0.1", daemon.port, USER, PASSWORD, b"/mirror", daemon.staging, reactor
        )

    def leftovers() -> list[bytes]:
        return os.listdir(daemon.staging) if os.path.isdir(daemon.staging) else []

    return Backend(
        served=daemon.served,
        remote_of=lambda path: path[len(daemon.served) :],  # module `mirror` = served
        make=make,
        leftovers=leftovers,
    )


class TestRsyncContract(FetcherContract):
    """The shared contract for `rsync`, against a password-protected module."""

    def test_wrong_password_fails_every_item(self, daemon: Daemon) -> None:
        """A refused login is FAILED for each item (not VANISHED), naming rsync's exit."""
        self.source(b"a", b"A")
        bad = RsyncFetcher(
            "127.0.0.1", daemon.port, USER, b"wrong", b"/mirror", daemon.staging, self.reactor
        )
        try:
            results = run_deferred(self.reactor, bad.fetch([self.item(b"a"), self.item(b"b")]))
        finally:
            run_deferred(self.reactor, bad.close())
        assert [r[1] for r in results] == [Outcome.FAILED, Outcome.FAILED]
        assert "rsync exit 5" in results[0][2]

    def test_same_path_twice_in_a_batch(self) -> None:
        """One remote path asked for two local copies fills both."""
        self.source(b"s", b"shared")
        first = self.item(b"s")
        second = FetchItem(first.remote, os.path.join(self.dst, b"s2"))
        results = self.fetch(first, second)
        assert [r[1] for r in results] == [Outcome.DONE, Outcome.DONE]
        assert self.read(b"s") == self.read(b"s2") == b"shared"

    def test_changed_big_file_is_sent_as_a_delta(self) -> None:
        """A big file changed in a few bytes is rebuilt from the mirror's old copy."""
        data = bytearray(os.urandom(4 << 20))
        self.source(b"big", bytes(data))
        remote = self.item(b"big").remote
        # the mirror's layout: the module's relative path under the mirror root
        item = FetchItem(remote, self.dst + remote)
        os.makedirs(os.path.dirname(item.local), exist_ok=True)
        assert [r[1] for r in self.fetch(item)] == [Outcome.DONE]
        first_literal = self.fetcher.literal_bytes
        data[1000:1010] = b"0123456789"
        self.source(b"big", bytes(data))
        assert [r[1] for r in self.fetch(item)] == [Outcome.DONE]
        with open(item.local, "rb") as f:
            assert f.read() == bytes(data)
        assert first_literal >= 4 << 20
        assert self.fetcher.literal_bytes - first_literal < 256 << 10
        assert self.fetcher.matched_bytes > 3 << 20

    def test_unknown_module_fails(self, daemon: Daemon) -> None:
        """Asking a module the daemon does not have is FAILED."""
        self.source(b"a", b"A")
        other = RsyncFetcher(
            "127.0.0.1", daemon.port, USER, PASSWORD, b"", daemon.staging, self.reactor
        )
        item = FetchItem(b"/nomodule" + self.item(b"a").remote, os.path.join(self.dst, b"a"))
        try:
            [(_, outcome, message)] = run_deferred(self.reactor, other.fetch([item]))
        finally:
            run_deferred(self.reactor, other.close())
        assert outcome is Outcome.FAILED
        assert "nomodule" in message
        assert not os.path.exists(item.local)


def test_split_module() -> None:
    """The first component is the module, the rest the path inside it."""
    assert split_module(b"/mirror/var/www/x") == (b"mirror", b"var/www/x")
    assert split_module(b"/mirror") is None
    assert split_module(b"") is None


def test_argv_has_no_password_and_no_shell(tmp_path: Path) -> None:
    """The command is an argument vector with the URL and staging dir as whole arguments."""
    url = daemon_url("::1", 873, "u", b"m\xff")
    argv = build_argv("rsync", url, b"/stage dir", 30)
    assert url == b"rsync://u@[::1]:873/m\xff/"
    assert argv[-2:] == [url, b"/stage dir/"]
    assert "--files-from=-" in argv and "--from0" in argv
    assert not any(b"pw" in (a if isinstance(a, bytes) else a.encode()) for a in argv)
