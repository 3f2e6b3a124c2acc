"""The ftp backend against two real servers on 127.0.0.1: mirrord's embedded
Twisted server and pyftpdlib (a third-party implementation)."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.threads import deferToThreadPool

from fs_sync.ftp import FtpFetcher
from fs_sync.interface import BackendUnavailable, FetchItem, Outcome, Result, is_local_disk_error
from tests.fetcher_contract import Backend, FetcherContract, private_reactor, run_deferred
from tests.helpers import free_port
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


def test_wrong_password_fails_the_whole_fetch(served: bytes, embedded: FtpServer) -> None:
    """A refused login (530) fails the fetch with BackendUnavailable(auth=True), giving the
    server's reply, instead of marking every file FAILED."""
    backend = ftp_backend(served, embedded.port, password="wrong")
    with private_reactor() as reactor:
        fetcher = backend.make(reactor)
        item = pw_item(served)
        with pytest.raises(BackendUnavailable) as caught:
            run_deferred(reactor, fetcher.fetch([item, item]))
        run_deferred(reactor, fetcher.close())
    assert caught.value.auth is True
    assert "530" in str(caught.value)


def test_connection_refused_fails_the_whole_fetch(served: bytes) -> None:
    """Nobody listening: BackendUnavailable (not auth) naming host and port."""
    port = free_port()
    with private_reactor() as reactor:
        fetcher = ftp_backend(served, port).make(reactor)
        with pytest.raises(BackendUnavailable) as caught:
            run_deferred(reactor, fetcher.fetch([pw_item(served)] * 3))
        run_deferred(reactor, fetcher.close())
    assert caught.value.auth is False
    assert f"127.0.0.1:{port}" in str(caught.value)


class CuttingServer:
    """A real TCP server that speaks just enough FTP to log a client in, then closes
    the connection on PASV: a link that is cut every time a transfer starts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cuts = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 hello\r\n")
                for line in lines:
                    verb = line.split()[0].upper()
                    if verb == b"PASV":
                        self.cuts += 1
                        break
                    reply = {b"USER": b"331 pass", b"PASS": b"230 in"}.get(verb, b"200 ok")
                    conn.sendall(reply + b"\r\n")

    def close(self) -> None:
        self.sock.close()


def test_connection_cut_fails_the_whole_fetch(served: bytes) -> None:
    """A link that breaks at each transfer, also after one reconnect, fails the fetch
    with BackendUnavailable rather than marking the file FAILED."""
    server = CuttingServer()
    try:
        with private_reactor() as reactor:
            fetcher = ftp_backend(served, server.port).make(reactor)
            with pytest.raises(BackendUnavailable) as caught:
                run_deferred(reactor, fetcher.fetch([pw_item(served)]))
            run_deferred(reactor, fetcher.close())
    finally:
        server.close()
    assert caught.value.auth is False
    assert server.cuts == 2  # one reconnect and retry, then give up


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the mirror's disk, soon full."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_local_disk_fails_the_fetch(served: bytes, embedded: FtpServer, small_disk: Path):
    """ENOSPC writing the temporary file fails the fetch with that OSError (the mirror's
    disk, not this file), and no temporary file is left."""
    name = os.path.join(served, b"enospc-big")
    with open(name, "wb") as f:
        f.write(os.urandom(512 << 10))
    item = FetchItem(name, os.fsencode(small_disk / "big"))
    with private_reactor() as reactor:
        fetcher = ftp_backend(served, embedded.port).make(reactor)
        with pytest.raises(OSError) as caught:
            run_deferred(reactor, fetcher.fetch([item]))
        run_deferred(reactor, fetcher.close())
    assert is_local_disk_error(caught.value) and caught.value.errno == errno.ENOSPC
    assert os.listdir(small_disk) == []


def test_read_only_local_disk_fails_the_fetch(
    served: bytes, embedded: FtpServer, small_disk: Path
) -> None:
    """EROFS creating the temporary file fails the fetch with that OSError."""
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    item = pw_item(served)
    item = FetchItem(item.remote, os.fsencode(small_disk / "pw"))
    with private_reactor() as reactor:
        fetcher = ftp_backend(served, embedded.port).make(reactor)
        with pytest.raises(OSError) as caught:
            run_deferred(reactor, fetcher.fetch([item]))
        run_deferred(reactor, fetcher.close())
    assert is_local_disk_error(caught.value) and caught.value.errno == errno.EROFS


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


def _ready(reactor: object, fetcher: FtpFetcher) -> list[socket.socket]:
    """The data connections the lanes hold ready for their next MRTR, once each lane's
    thread has done what was queued on it (a lane has exactly one thread)."""
    for lane in fetcher._lanes:
        run_deferred(reactor, deferToThreadPool(reactor, lane.pool, lambda: None))
    return [lane._standby for lane in fetcher._lanes if lane._standby is not None]


def test_next_batch_goes_over_a_data_connection_made_ready(
    served: bytes, embedded: FtpServer
) -> None:
    """After a batch the lane connects the next MRTR's data connection; the next batch
    uses it (a change then waits one round trip, not PASV + connect + MRTR)."""
    item = pw_item(served)
    with private_reactor() as reactor:
        fetcher = FtpFetcher(
            "127.0.0.1", embedded.port, USER, PASSWORD.encode(), b"", reactor, connections=1
        )
        try:
            assert run_deferred(reactor, fetcher.fetch([item]))[0][1] is Outcome.DONE
            [first] = _ready(reactor, fetcher)
            assert first.getpeername()[1] != embedded.port  # a data port, connected
            with open(item.remote, "wb") as f:
                f.write(b"second")
            assert run_deferred(reactor, fetcher.fetch([item]))[0][1] is Outcome.DONE
            assert first.fileno() == -1  # used by the second batch, then closed
            [second] = _ready(reactor, fetcher)
            assert second is not first
        finally:
            run_deferred(reactor, fetcher.close())
        assert second.fileno() == -1
    with open(item.local, "rb") as f:
        assert f.read() == b"second"


def test_no_data_connection_is_made_ready_for_a_server_without_mrtr(
    served: bytes, pyftpd: FtpServer
) -> None:
    """pyftpdlib gets one RETR per file, each with its own PASV: nothing waits ready."""
    with private_reactor() as reactor:
        fetcher = ftp_backend(served, pyftpd.port).make(reactor)
        try:
            assert run_deferred(reactor, fetcher.fetch([pw_item(served)]))[0][1] is Outcome.DONE
            assert not _ready(reactor, fetcher)
        finally:
            run_deferred(reactor, fetcher.close())


# -- names: one byte rule on both sides ----------------------------------------------

NASTY_NAMES = [
    "Ελληνικά-2".encode(),
    "Кириллица".encode(),
    "漢字かな한글".encode(),
    b"caf\xe9 \xff\xfe-invalid-utf8",
    b"\xc3",  # a truncated UTF-8 sequence
    b"two  spaces and a trailing one ",
    b" leading space",
    b"hash#tag",
    b"it's",
    b"$HOME",
    b"100% done %41",
    b"-leading-dash",
    b"--",
    b"star*",
    b"[bracket]",
    b"?",
    b"~tilde",
    b"back\\slash",
    b"tab\there",
    b"\x01\x7f control",
    b"...",
    b"..x",
    b"x\x85y",  # NEL in latin-1: must not be a line break
]


def fetch_names(backend: Backend, src: bytes, dst: bytes, names: list[bytes]) -> list[Result]:
    os.makedirs(src, exist_ok=True)
    os.makedirs(dst, exist_ok=True)
    for name in names:
        with open(os.path.join(src, name), "wb") as f:
            f.write(b"content of " + name)
    items = [FetchItem(os.path.join(src, n), os.path.join(dst, n)) for n in names]
    with private_reactor() as reactor:
        fetcher = backend.make(reactor)
        try:
            return run_deferred(reactor, fetcher.fetch(items))
        finally:
            run_deferred(reactor, fetcher.close())


@pytest.mark.parametrize("server", ["embedded", "pyftpd"])
def test_nasty_names_travel_byte_for_byte(
    served: bytes, server: str, request: pytest.FixtureRequest
) -> None:
    """UTF-8, invalid UTF-8, spaces, #, ', $, %, a leading dash, *, [ ...: each one is
    fetched under exactly its own bytes, from either server."""
    port = request.getfixturevalue(server).port
    src = os.path.join(served, b"nasty-" + server.encode())
    dst = os.path.join(os.path.dirname(served), b"nasty-out-" + server.encode())
    results = fetch_names(ftp_backend(served, port), src, dst, NASTY_NAMES)
    assert [(r[1], r[2]) for r in results] == [(Outcome.DONE, "")] * len(NASTY_NAMES)
    assert sorted(os.listdir(dst)) == sorted(NASTY_NAMES)
    for name in NASTY_NAMES:
        with open(os.path.join(dst, name), "rb") as f:
            assert f.read() == b"content of " + name


_NAME_BYTES = st.binary(min_size=1, max_size=40).filter(
    lambda n: b"/" not in n and b"\0" not in n and b"\r" not in n and b"\n" not in n
)


@given(names=st.lists(_NAME_BYTES.filter(lambda n: n not in (b".", b"..")), max_size=6))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_name_without_cr_lf_round_trips(served: bytes, embedded: FtpServer, names) -> None:
    """Hypothesis: any byte name but CR or LF comes back from the embedded server under
    the same bytes with the same content."""
    names = list(dict.fromkeys(names))
    case = hashlib.sha1(b"\0".join(names)).hexdigest().encode()
    src = os.path.join(served, b"hyp", case)
    dst = os.path.join(os.path.dirname(served), b"hyp-out", case)
    results = fetch_names(ftp_backend(served, embedded.port), src, dst, names)
    assert [r[1] for r in results] == [Outcome.DONE] * len(names), results
    for name in names:
        with open(os.path.join(dst, name), "rb") as f:
            assert f.read() == b"content of " + name


def test_name_with_cr_or_lf_is_unsupported(served: bytes, embedded: FtpServer) -> None:
    """A name holding CR or LF is UNSUPPORTED, saying FTP cannot carry it; the rest of
    the batch is fetched."""
    names = [b"before", b"new\nline", b"carriage\rreturn", b"after"]
    src = os.path.join(served, b"crlf")
    dst = os.path.join(os.path.dirname(served), b"crlf-out")
    results = fetch_names(ftp_backend(served, embedded.port), src, dst, names)
    outcomes = [r[1] for r in results]
    assert outcomes == [Outcome.DONE, Outcome.UNSUPPORTED, Outcome.UNSUPPORTED, Outcome.DONE]
    assert all("FTP cannot carry" in r[2] for r in results[1:3])
    assert sorted(os.listdir(dst)) == [b"after", b"before"]


def test_reply_naming_a_utf8_path_reads_as_utf8(served: bytes, embedded: FtpServer) -> None:
    """The reason given for a missing UTF-8 name shows the name, not latin-1 mojibake."""
    src = os.path.join(served, b"reason")
    os.makedirs(src, exist_ok=True)
    name = "Ελληνικά-gone".encode()
    item = FetchItem(os.path.join(src, name), os.path.join(os.path.dirname(served), name))
    with private_reactor() as reactor:
        fetcher = ftp_backend(served, embedded.port).make(reactor)
        [(_, outcome, reason)] = run_deferred(reactor, fetcher.fetch([item]))
        run_deferred(reactor, fetcher.close())
    assert outcome is Outcome.VANISHED
    assert "Ελληνικά-gone" in reason
