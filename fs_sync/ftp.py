"""The `ftp` backend: RETR over one long-lived passive, binary connection.

Why ftplib in one dedicated thread rather than Twisted's FTPClient: ftplib
streams a RETR straight into our temporary file with blocking writes (no
producer/consumer plumbing), it is small and well trodden, and a pool of
exactly one thread serialises every use of the one connection by
construction. The thread owns the connection; the reactor only sees
Deferreds.

Paths are the worker's bytes, sent unchanged: ftplib runs with the latin-1
codec, which maps each byte to one character and back, so a name that is
not UTF-8 reaches the server byte for byte (the embedded server decodes the
same way; pyftpdlib does with `unicode_errors='surrogateescape'`).
"""

from __future__ import annotations

import ftplib
import socket
from collections.abc import Sequence

from twisted.internet.defer import Deferred
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
    """Fetcher pulling `root + path` from an FTP server."""

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
    ) -> None:
        self.tmpdir = tmpdir
        self.fsync = fsync
        self.host, self.port, self.user = host, port, user
        self._password = (password or b"").decode("latin-1")
        self.root = root.rstrip(b"/")
        self.timeout = timeout
        self._ftp: ftplib.FTP | None = None  # touched only in the worker thread
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="fs_sync-ftp")
        self._pool.start()

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]:
        batch = list(items)
        return deferToThreadPool(self._reactor, self._pool, self._fetch_batch, batch)

    def close(self) -> Deferred[None]:
        d = deferToThreadPool(self._reactor, self._pool, self._disconnect, True)

        def stop(_: object) -> None:
            self._pool.stop()

        return d.addBoth(stop)

    # -- worker thread --

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

    def _disconnect(self, polite: bool = False) -> None:
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

    def _fetch_batch(self, batch: list[FetchItem]) -> list[Result]:
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
                self._disconnect()
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
