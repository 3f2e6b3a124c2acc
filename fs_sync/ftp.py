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

A server that offers MRTR in its FEAT reply (mirrord's embedded one) gets a
lane's share in batches of `BATCH` files over one data connection each
(fs_sync/ftpbatch.py); any other server gets one RETR per file.  Once a lane
has served a batch it opens the next MRTR's data connection at once (PASV
and the TCP connect), while it waits for work: a change that comes later
costs one MRTR round trip, not three.  A data connection made ready that
has gone stale meanwhile (the server restarted or timed the link out) is
dropped and the batch goes over a fresh one.
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
from fs_sync.ftpbatch import COMMAND, Content, End, FrameReader, Start, Status, encode_names
from fs_sync.interface import (
    BackendUnavailable,
    FetchItem,
    LocalDiskError,
    Outcome,
    Result,
    is_local_disk_error,
)

#: Files per MRTR: bounded by the format's MAX_NAMES, and small enough that a
#: batch cut short costs little to redo file by file.
BATCH = 1024

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
        ds = []
        for lane, share in zip(self._lanes, shares, strict=True):
            if share:
                ds.append(deferToThreadPool(self._reactor, lane.pool, lane.fetch_batch, share))
                lane.pool.callInThread(lane.make_ready)  # after the results are handed back

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
        self._batched = False  # the server offers MRTR (known once connected)
        self._standby: socket.socket | None = None  # the next MRTR's data connection, made ready
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
            self._batched = _offers(ftp, COMMAND)
        except BackendUnavailable:
            ftp.close()
            raise
        except (*_LINK_ERRORS, ftplib.Error) as e:
            ftp.close()
            raise BackendUnavailable(f"cannot connect to FTP server {self.where}: {e}") from e
        self._ftp = ftp
        return ftp

    def disconnect(self, polite: bool = False) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.close()
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
        results: dict[int, Result] = {}
        todo: list[tuple[int, FetchItem, str]] = []
        for index, item in enumerate(batch):
            refused = refuse_directory(item)
            path = ftp_path(self.root, item.remote)
            if refused:
                results[index] = refused
            elif path is None:
                results[index] = (item, Outcome.UNSUPPORTED, CANNOT_CARRY)
            else:
                todo.append((index, item, path))
        for start in range(0, len(todo), BATCH):
            part = todo[start : start + BATCH]
            self._connect()
            done = self._fetch_together(part) if self._batched else {}
            results.update(done)
            for index, item, _ in part:
                if index not in done:
                    results[index] = self._fetch(item)
        return [results[i] for i in range(len(batch))]

    def make_ready(self) -> None:
        """Open the next MRTR's data connection now, while nothing waits on this lane."""
        ftp = self._ftp
        if ftp is None or not self._batched or self._standby is not None:
            return
        try:
            host, port = ftp.makepasv()
            self._standby = socket.create_connection((host, port), self.timeout)
        except (*_LINK_ERRORS, ftplib.Error):
            self.disconnect()  # the next batch connects afresh

    def _open_batch(self) -> socket.socket | None:
        """The data connection of one MRTR, its 1xx reply read; None: go file by file."""
        standby, self._standby = self._standby, None
        if standby is not None:
            try:
                _begin_transfer(self._connect(), COMMAND)
                return standby
            except (*_LINK_ERRORS, ftplib.Error):
                standby.close()
                self.disconnect()  # gone stale while ready: a fresh link for this batch
        ftp = self._connect()
        try:
            return ftp.transfercmd(COMMAND)
        except ftplib.error_perm:
            self._batched = False  # the server took it back: RETR from now on
        except _LINK_ERRORS:
            self.disconnect()
        return None

    def _fetch_together(self, part: list[tuple[int, FetchItem, str]]) -> dict[int, Result]:
        """One MRTR for `part`: the results it gave (the rest go file by file)."""
        results: dict[int, Result] = {}
        out: AtomicFile | None = None
        failed = ""  # why this file's content is being thrown away
        conn = self._open_batch()
        if conn is None:
            return results
        ftp = self._connect()
        try:
            with conn:
                conn.sendall(encode_names(path.encode("latin-1") for _, _, path in part))
                reader = FrameReader()
                files = iter(part)
                index, item, path = next(files)
                while block := conn.recv(1 << 16):
                    for event in reader.feed(block):
                        match event:
                            case Start(Status.OK):
                                out, failed = _start(item, self.tmpdir, self.fsync)
                                continue
                            case Start(status):
                                results[index] = _outcome(item, path, status)
                            case Content(data):
                                if out is not None:
                                    try:
                                        out.write(data)
                                    except OSError as e:
                                        out, failed = _throw_away(
                                            out, e, "writing the temporary file"
                                        )
                                continue
                            case End(status):
                                results[index] = _finish(item, out, failed, status)
                                out = None
                        if len(results) == len(part):
                            break
                        index, item, path = next(files)
            ftp.voidresp()
        except LocalDiskError:
            self.disconnect()  # the transfer was cut short: its reply is still due
            raise
        except (*_LINK_ERRORS, ftplib.error_temp, ftplib.error_perm, ValueError):
            self.disconnect()  # cut short: what is missing goes file by file
        finally:
            if out is not None:
                out.abort()
        return results

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


def _begin_transfer(ftp: ftplib.FTP, command: str) -> None:
    """Send `command` for the passive data connection already made, as ftplib's
    `transfercmd` does once connected: a 2xx may come first, then a 1xx."""
    reply = ftp.sendcmd(command)
    if reply[:1] == "2":
        reply = ftp.getresp()
    if reply[:1] != "1":
        raise ftplib.error_reply(reply)


def _offers(ftp: ftplib.FTP, feature: str) -> bool:
    """Whether the server's FEAT reply (RFC 2389) lists `feature`."""
    try:
        reply = ftp.sendcmd("FEAT")
    except ftplib.Error:
        return False
    return any(line.strip().upper() == feature for line in reply.splitlines()[1:-1])


def _start(item: FetchItem, tmpdir: bytes | None, fsync: bool) -> tuple[AtomicFile | None, str]:
    """The temporary file for a batch's next file, or why there is none."""
    try:
        return AtomicFile(item.local, tmpdir, fsync), ""
    except OSError as e:
        problem = _local(e, "temporary file")
        if isinstance(problem, LocalDiskError):
            raise problem from e
        return None, str(problem)


def _throw_away(out: AtomicFile, error: OSError, doing: str) -> tuple[None, str]:
    out.abort()
    problem = _local(error, doing)
    if isinstance(problem, LocalDiskError):
        raise problem from error
    return None, str(problem)


def _finish(item: FetchItem, out: AtomicFile | None, failed: str, status: Status) -> Result:
    """A batch file's content is whole (or not): install it and say so."""
    if out is None:
        return (item, Outcome.FAILED, failed)
    if status is not Status.OK:
        out.abort()
        return (item, Outcome.FAILED, "reading it on the worker failed")
    try:
        out.commit()
    except IsADirectoryError:
        return (item, Outcome.FAILED, "local path is a directory")
    except OSError as e:
        problem = _local(e, "installing the fetched file")
        if isinstance(problem, LocalDiskError):
            raise problem from e
        return (item, Outcome.FAILED, str(problem))
    return (item, Outcome.DONE, "")


def _outcome(item: FetchItem, path: str, status: Status) -> Result:
    """What a batch's status byte for a file without content means."""
    name = readable(path)
    if status is Status.MISSING:
        return (item, Outcome.VANISHED, f"{name}: not on the worker (or not served)")
    if status is Status.NOT_A_FILE:
        return (item, Outcome.NOT_A_FILE, "not a regular file on the server")
    if status is Status.DENIED:
        return (item, Outcome.FAILED, f"on the worker: {name}: permission denied")
    return (item, Outcome.FAILED, f"on the worker: {name}: could not be opened")


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
