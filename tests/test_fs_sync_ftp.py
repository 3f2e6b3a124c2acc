"""The ftp backend against two real servers on 127.0.0.1: mirrord's embedded
Twisted server and pyftpdlib (a third-party implementation)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fs_sync.ftp import FtpFetcher
from fs_sync.interface import FetchItem, Outcome
from tests.fetcher_contract import Backend, FetcherContract, private_reactor, run_deferred
from tests.test_ftpserver import PASSWORD, USER, FtpServer, start_embedded_ftp

PYFTPDLIB = r"""
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
authorizer = DummyAuthorizer()
authorizer.add_user(sys.argv[1], sys.argv[2], "/", perm="elr")
class Handler(FTPHandler):
    pass
Handler.authorizer = authorizer
Handler.unicode_errors = "surrogateescape"  # raw byte names, as the fetcher sends them
server = FTPServer(("127.0.0.1", 0), Handler)
print(server.address[1], flush=True)
server.serve_forever()
"""


def start_pyftpdlib() -> FtpServer:
    argv = [sys.executable, "-c", PYFTPDLIB, USER, PASSWORD]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"pyftpdlib exited with {proc.returncode}")
    return FtpServer(proc, int(line))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ftp") / "served"
    path.mkdir()
    return os.fsencode(path)


@pytest.fixture(scope="module")
def embedded(served: bytes) -> Iterator[FtpServer]:
    server = start_embedded_ftp([served])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pyftpd() -> Iterator[FtpServer]:
    server = start_pyftpdlib()
    yield server
    server.stop()


def ftp_backend(served: bytes, port: int, password: str = PASSWORD) -> Backend:
    def make(reactor: object) -> FtpFetcher:
        return FtpFetcher("127.0.0.1", port, USER, password.encode(), b"", reactor, timeout=10)

    return Backend(served=served, remote_of=lambda path: path, make=make)


class TestEmbeddedServer(FetcherContract):
    """The shared contract for `ftp`, against mirrord's embedded server."""

    @pytest.fixture
    def backend(self, served: bytes, embedded: FtpServer) -> Backend:
        return ftp_backend(served, embedded.port)

    def test_outside_included_tree_is_vanished(self, served: bytes) -> None:
        """A file the server will not serve (outside its trees) is not fetched."""
        outside = os.path.join(os.path.dirname(served), b"outside")
        with open(outside, "wb") as f:
            f.write(b"private")
        item = FetchItem(outside, self.item(b"x").local)
        [(_, outcome, _)] = self.fetch(item)
        assert outcome is Outcome.VANISHED
        assert not os.path.exists(item.local)


class TestPyftpdlibServer(FetcherContract):
    """The shared contract for `ftp`, against pyftpdlib."""

    @pytest.fixture
    def backend(self, served: bytes, pyftpd: FtpServer) -> Backend:
        return ftp_backend(served, pyftpd.port)


def test_wrong_password_fails_the_batch(served: bytes, embedded: FtpServer) -> None:
    """A refused login is FAILED for every item, with the server's reply."""
    backend = ftp_backend(served, embedded.port, password="wrong")
    with private_reactor() as reactor:
        fetcher = backend.make(reactor)
        item = pw_item(served)
        results = run_deferred(reactor, fetcher.fetch([item, item]))
        run_deferred(reactor, fetcher.close())
    assert [r[1] for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert "530" in results[0][2]


def pw_item(served: bytes) -> FetchItem:
    path = os.path.join(served, b"pw-test")
    with open(path, "wb") as f:
        f.write(b"x")
    return FetchItem(path, os.path.join(os.path.dirname(served), b"pw-test-out"))


def test_reconnects_after_server_restart(served: bytes) -> None:
    """When the server restarts between batches the next fetch reconnects and succeeds."""
    server = start_embedded_ftp([served])
    port = server.port
    item = pw_item(served)
    try:
        with private_reactor() as reactor:
            fetcher = ftp_backend(served, port).make(reactor)
            assert run_deferred(reactor, fetcher.fetch([item]))[0][1] is Outcome.DONE
            server.stop()
            server = start_embedded_ftp([served], port=port)
            with open(item.remote, "wb") as f:
                f.write(b"after restart")
            [(_, outcome, message)] = run_deferred(reactor, fetcher.fetch([item]))
            run_deferred(reactor, fetcher.close())
        assert outcome is Outcome.DONE, message
        with open(item.local, "rb") as f:
            assert f.read() == b"after restart"
    finally:
        server.stop()
