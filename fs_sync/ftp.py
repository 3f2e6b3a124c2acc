"""The `ftp` backend: RETR over a few long-lived passive, binary connections.

Why ftplib on dedicated threads rather than Twisted's FTPClient: ftplib
streams a RETR straight into our temporary file with blocking writes (no
producer/consumer plumbing), it is small and well trodden, and a pool of
exactly one thread per connection serialises every use of that connection
by construction. The threads own the connections; the reactor only sees
Deferreds.

One byte rule for names, on both sides: the control connection is read
and written as latin-1, which maps each byte to one character and back, so
every name reaches the server byte for byte whatever it is (UTF-8 as RFC
2640 wants, or not UTF-8 at all); the embedded server decodes its command
lines the same way, and pyftpdlib does with `unicode_errors='surrogateescape'`.
Replies are shown to people as UTF-8 (`readable`). The one name FTP cannot
carry is one holding CR or LF (they end a command line): such an item is
UNSUPPORTED, never sent.

Which trouble is whose:
- refused or cut connections (also once more after a reconnect), a login
  refused (530: `auth=True`) or a server that will not talk fail the whole
  fetch with `BackendUnavailable`;
- the mirror's disk refusing the temporary file (ENOSPC, EROFS, ...) fails
  it with `LocalDiskError`;
- a reply about one file (550, or a 4xx that repeats) is that file's outcome.
"""

from __future__ import annotations

import ftplib
import socket
import zlib
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from fs_sync.atomic import AtomicFile, refuse_directory
from fs_sync.interface import (
    BackendUnavailable,
    FetchItem,
    LocalDiskError,
    Outcome,
    Result,
    is_local_disk_error,
)

#: The reason given for a name FTP cannot carry.
CANNOT_CARRY = "FTP cannot carry a name holding CR or LF"

# The link itself is broken (or the server talks nonsense): reconnect once.
_LINK_ERRORS = (OSError, EOFError, ftplib.error_reply, ftplib.error_proto)


def readable(reply: str) -> str:
    """A reply as ftplib decoded it (latin-1), shown as the UTF-8 it usually is."""
    return reply.encode("latin-1", "replace").decode("utf-8", "backslashreplace")


def ftp_path(root: bytes, remote: bytes) -> str | None:
    """The command-line form of `root + remote`, or None when FTP cannot carry it."""
    path = root + remote
    if b"\r" in path or b"\n" in path:
        return None
    return path.decode("latin-1")


class _LocalFailure(Exception):
    """Our own side could not take this one file (not a whole-disk problem)."""


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
        """One result per item, in order; fails whole (see the module docstring) only
        once every lane has stopped, so nothing of this batch is still being written."""
        batch = list(items)
        shares: list[list[FetchItem]] = [[] for _ in self._lanes]
        for item in batch:
            shares[zlib.crc32(item.local) % len(shares)].append(item)
        ds = [
            deferToThreadPool(self._reactor, lane.pool, lane.fetch_batch, share)
            for lane, share in zip(self._lanes, shares, strict=True)
            if share
        ]

        # Each lane gives (True, its results) or (False, a Failure): Twisted
        # types the second item as the results either way, hence Any here.
        def in_order(per_lane: list[tuple[bool, Any]]) -> list[Result] | Failure:
            failures: list[Failure] = [value for ok, value in per_lane if not ok]
            if failures:
                disk = [f for f in failures if f.check(OSError)]
                return (disk or failures)[0]
            by_item = {id(r[0]): r for _, results in per_lane for r in results}
            return [by_item[id(item)] for item in batch]

        return DeferredList(ds, consumeErrors=True).addCallback(in_order)

    def close(self) -> Deferred[None]:
        ds = [
            deferToThreadPool(self._reactor, lane.pool, lane.disconnect, True)
            for lane in self._lanes
        ]

        def stop(_: object) -> None:
            for lane in self._lanes:
                lane.pool.stop()

        return DeferredList(ds, consumeErrors=True).addBoth(stop)


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
        self.where = f"{host}:{port}"
        self._password = (password or b"").decode("latin-1")
        self.root = root.rstrip(b"/")
        self.timeout = timeout
        self._ftp: ftplib.FTP | None = None  # touched only in this lane's thread
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name=f"fs_sync-ftp-{number}")
        self.pool.start()

    def _connect(self) -> ftplib.FTP:
        """The lane's logged-in connection; BackendUnavailable when there is none to have."""
        if self._ftp is not None:
            return self._ftp
        ftp = ftplib.FTP(encoding="latin-1", timeout=self.timeout)
        try:
            ftp.connect(self.host, self.port)
            assert ftp.sock is not None
            # Nagle off: small commands must not wait for a delayed ACK.
            ftp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                ftp.login(self.user, self._password)
            except ftplib.error_perm as e:
                reply = readable(str(e))
                raise BackendUnavailable(
                    f"FTP server {self.where} refused login as {self.user!r}: {reply}",
                    auth=reply.startswith("530"),
                ) from e
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")
        except BackendUnavailable:
            ftp.close()
            raise
        except (*_LINK_ERRORS, ftplib.Error) as e:
            ftp.close()
            raise BackendUnavailable(f"cannot connect to FTP server {self.where}: {e}") from e
        self._ftp = ftp
        return ftp

    def disconnect(self, polite: bool = False) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        if polite:
            try:
                ftp.quit()
                return
            except (*_LINK_ERRORS, ftplib.Error):
                pass
        ftp.close()

    def fetch_batch(self, batch: list[FetchItem]) -> list[Result]:
        """Runs in the lane's thread; whole-fetch trouble is raised, ending the share."""
        return [self._fetch(item) for item in batch]

    def _fetch(self, item: FetchItem) -> Result:
        refused = refuse_directory(item)
        if refused:
            return refused
        path = ftp_path(self.root, item.remote)
        if path is None:
            return (item, Outcome.UNSUPPORTED, CANNOT_CARRY)
        for attempt in (1, 2):
            ftp = self._connect()
            try:
                return _retrieve(ftp, item, path, self.tmpdir, self.fsync)
            except (LocalDiskError, _LocalFailure) as e:
                self.disconnect()  # the transfer was cut short: its reply is still due
                if isinstance(e, LocalDiskError):
                    raise
                return (item, Outcome.FAILED, str(e))
            except ftplib.error_temp as e:  # 4xx about this transfer on a live link
                if str(e).startswith("421"):  # ... unless the server is closing it
                    self.disconnect()
                    if attempt == 2:
                        raise BackendUnavailable(f"FTP server {self.where}: {e}") from e
                elif attempt == 2:
                    return (item, Outcome.FAILED, readable(str(e)))
            except _LINK_ERRORS as e:
                self.disconnect()
                if attempt == 2:
                    message = f"FTP connection to {self.where} broke, also after a reconnect"
                    raise BackendUnavailable(f"{message}: {e or type(e).__name__}") from e
        raise AssertionError("unreachable")


def _local(error: OSError, doing: str) -> Exception:
    """Our own side's OSError: whole-disk trouble, or this one file's."""
    if is_local_disk_error(error):
        return LocalDiskError(error.errno, f"{doing}: {error.strerror}", error.filename)
    return _LocalFailure(f"{doing}: {error.strerror or error}")


def _retrieve(
    ftp: ftplib.FTP, item: FetchItem, path: str, tmpdir: bytes | None = None, fsync: bool = True
) -> Result:
    """RETR one file into a temporary sibling of `local` and rename it."""
    try:
        out = AtomicFile(item.local, tmpdir, fsync)
    except OSError as e:
        raise _local(e, "temporary file") from e
    with out:
        try:
            # retrbinary() minus its TYPE I per file: binary was set at login.
            with ftp.transfercmd("RETR " + path) as conn:
                while block := conn.recv(1 << 16):
                    try:
                        out.write(block)
                    except OSError as e:
                        raise _local(e, "writing the temporary file") from e
            ftp.voidresp()
        except ftplib.error_perm as e:
            return _refused(ftp, item, path, readable(str(e)))
        try:
            out.commit()
        except IsADirectoryError:
            return (item, Outcome.FAILED, "local path is a directory")
        except OSError as e:
            raise _local(e, "installing the fetched file") from e
    return (item, Outcome.DONE, "")


def _refused(ftp: ftplib.FTP, item: FetchItem, path: str, reply: str) -> Result:
    """The outcome of a RETR the server refused with `reply` (5xx)."""
    if not reply.startswith("550"):
        return (item, Outcome.FAILED, reply)
    try:
        ftp.cwd(path)  # 550 for a directory too: tell them apart
    except ftplib.error_perm:
        return (item, Outcome.VANISHED, reply)
    return (item, Outcome.NOT_A_FILE, "is a directory")
