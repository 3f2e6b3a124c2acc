"""The `ftp` backend: RETR over a few long-lived passive, binary connections.

Why ftplib on dedicated threads rather than Twisted's FTPClient: ftplib
streams a RETR straight into our temporary file with blocking writes (no
producer/consumer plumbing), it is small and well trodden, and a pool of
exactly one thread per connection serialises every use of that connection
by construction. The threads own the connections; the reactor only sees
Deferreds.

Paths are the worker's bytes, sent unchanged: ftplib runs with the latin-1
codec, which maps each byte to one character and back, so a name that is
not UTF-8 reaches the server byte for byte (the embedded server decodes the
same way; pyftpdlib does with `unicode_errors='surrogateescape'`).
"""

from __future__ import annotations

import ftplib
import socket
import zlib
from collections.abc import Sequence

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from fs_sync.atomic import AtomicFile, refuse_directory
from fs_sync.interface import FetchItem, Outcome, Result

# A broken connection: worth one reconnect and retry.
_LINK_ERRORS = (OSError, EOFError, ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)


class _LoginFailed(Exception):
    pass


class FtpFetcher:
    """Fetcher pulling `root + path` from an FTP server over a few connections.

    FTP costs a round trip or three per file (PASV, RETR, the final reply),
    so one connection leaves the link idle most of the time with small
    files. A batch is spread over `connections` lanes, each one connection
    on its own thread; a given local path always goes to the same lane, so
    two fetches of one file never race.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: bytes | None,
        root: bytes,
        reactor: IReactorFromThreads,
        *,
        timeout: float = 60.0,
        tmpdir: bytes | None = None,
        fsync: bool = True,
        connections: int = 4,
    ) -> None:
        self._reactor = reactor
        self.host, self.port, self.user = host, port, user
        self._lanes = [
            _Lane(host, port, user, password, root, timeout, tmpdir, fsync, n)
            for n in range(max(1, connections))
        ]

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]:
        batch = list(items)
        shares: list[list[FetchItem]] = [[] for _ in self._lanes]
        for item in batch:
            shares[zlib.crc32(item.local) % len(shares)].append(item)
        ds = [
            deferToThreadPool(self._reactor, lane.pool, lane.fetch_batch, share)
            for lane, share in zip(self._lanes, shares, strict=True)
            if share
        ]

        def in_order(per_lane: list[list[Result]]) -> list[Result]:
            by_item = {id(r[0]): r for results in per_lane for r in results}
            return [by_item[id(item)] for item in batch]

        return gatherResults(ds, consumeErrors=True).addCallback(in_order)

    def close(self) -> Deferred[None]:
        ds = [
            deferToThreadPool(self._reactor, lane.pool, lane.disconnect, True)
            for lane in self._lanes
        ]

        def stop(_: object) -> None:
            for lane in self._lanes:
                lane.pool.stop()

        return gatherResults(ds, consumeErrors=True).addBoth(stop)


class _Lane:
    """One FTP connection and the single thread that owns it."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: bytes | None,
        root: bytes,
        timeout: float,
        tmpdir: bytes | None,
        fsync: bool,
        number: int,
    ) -> None:
        self.tmpdir = tmpdir
        self.fsync = fsync
        self.host, self.port, self.user = host, port, user
        self._password = (password or b"").decode("latin-1")
        self.root = root.rstrip(b"/")
        self.timeout = timeout
        self._ftp: ftplib.FTP | None = None  # touched only in this lane's thread
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name=f"fs_sync-ftp-{number}")
        self.pool.start()

    def _connect(self) -> ftplib.FTP:
        if self._ftp is None:
            ftp = ftplib.FTP(encoding="latin-1", timeout=self.timeout)
            try:
                ftp.connect(self.host, self.port)
                assert ftp.sock is not None
                # Nagle off: small commands must not wait for a delayed ACK.
                ftp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    ftp.login(self.user, self._password)
                except ftplib.error_perm as e:
                    raise _LoginFailed(f"login refused: {e}") from e
                ftp.set_pasv(True)
                ftp.voidcmd("TYPE I")
            except BaseException:
                ftp.close()
                raise
            self._ftp = ftp
        return self._ftp

    def disconnect(self, polite: bool = False) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        if polite:
            try:
                ftp.quit()
                return
            except (*_LINK_ERRORS, ftplib.error_perm):
                pass
        ftp.close()

    def fetch_batch(self, batch: list[FetchItem]) -> list[Result]:
        results: list[Result] = []
        down: str | None = None  # once connecting fails, fail the rest quickly
        for item in batch:
            if down is not None:
                results.append((item, Outcome.FAILED, down))
                continue
            result, down = self._fetch_with_retry(item)
            results.append(result)
        return results

    def _fetch_with_retry(self, item: FetchItem) -> tuple[Result, str | None]:
        refused = refuse_directory(item)
        if refused:
            return refused, None
        path = (self.root + item.remote).decode("latin-1")
        if "\r" in path or "\n" in path:
            return (item, Outcome.FAILED, "name cannot be sent over FTP"), None
        for attempt in (1, 2):
            try:
                ftp = self._connect()
            except _LoginFailed as e:
                return (item, Outcome.FAILED, str(e)), str(e)
            except (*_LINK_ERRORS, ftplib.error_perm) as e:
                message = f"cannot connect to {self.host}:{self.port}: {e}"
                return (item, Outcome.FAILED, message), message
            try:
                return _retrieve(ftp, item, path, self.tmpdir, self.fsync), None
            except _LINK_ERRORS as e:
                self.disconnect()
                if attempt == 2:
                    return (item, Outcome.FAILED, f"transfer failed: {e}"), None
        raise AssertionError("unreachable")


def _retrieve(
    ftp: ftplib.FTP, item: FetchItem, path: str, tmpdir: bytes | None = None, fsync: bool = True
) -> Result:
    """RETR one file into a temporary sibling of `local` and rename it."""
    try:
        out = AtomicFile(item.local, tmpdir, fsync)
    except OSError as e:
        return (item, Outcome.FAILED, f"temporary file: {e.strerror or e}")
    try:
        with out:
            # retrbinary() minus its TYPE I per file: binary was set at login.
            with ftp.transfercmd("RETR " + path) as conn:
                while block := conn.recv(1 << 16):
                    out.write(block)
            ftp.voidresp()
            out.commit()
    except ftplib.error_perm as e:
        reply = str(e)
        if not reply.startswith("550"):
            return (item, Outcome.FAILED, reply)
        try:
            ftp.cwd(path)  # 550 for a directory too: tell them apart
        except ftplib.error_perm:
            return (item, Outcome.VANISHED, reply)
        return (item, Outcome.NOT_A_FILE, "is a directory")
    except IsADirectoryError:
        return (item, Outcome.FAILED, "local path is a directory")
    return (item, Outcome.DONE, "")
