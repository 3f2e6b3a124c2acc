"""mirrord's optional embedded FTP service: read-only, confined, one user.

It lets an fs_mirror with `fssync.type=ftp` fetch file contents from a
worker that runs no other file server. It serves the worker's real absolute
paths (FTP `/var/www/x` is the file `/var/www/x`), but only paths the
daemon's identity includes (`is_included`), opened below their include root
one component at a time without following any symlink (`fs_sync.beneath`):
a symlink, or a directory flipped to one while the request runs, cannot lead
out of the trees, and the descriptor served is the one that was checked.
Every write command is refused and anonymous login is refused.

Path bytes: Twisted's FTP protocol decodes each command line as latin-1, so
encoding a path segment back with latin-1 gives the client's exact bytes;
names that are not UTF-8 are served byte for byte.

Twisted's `twisted.protocols.ftp` imports the global reactor when it is
imported (and uses it for passive data ports), so it is imported only when
a factory is made: importing this module installs no reactor.
"""

from __future__ import annotations

import errno
import functools
import hmac
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

from fs_sync.beneath import open_beneath
from fs_sync.ftpbatch import COMMAND, BatchError, NameReader, Status, chunk

IsIncluded = Callable[[bytes], bool]


def segments_to_path(segments: Sequence[str]) -> bytes:
    """Twisted's path segments (latin-1 decoded) back to the absolute byte path."""
    return b"/" + b"/".join(s.encode("latin-1") for s in segments)


def open_served(is_included: IsIncluded, path: bytes, flags: int) -> int:
    """An fd for `path` opened with `flags`; ``ENOENT`` when it must not be served.

    The path as asked must be included. It is opened below its include root
    without following a symlink (the root itself may be one, such as
    /var/www -> /srv/www: the administrator chose it), so the name checked
    is the file opened and excluded sub-trees stay excluded. A symlink in the
    way is ``ELOOP`` (never followed: fs_mirror gets symlinks as records).
    """
    if not is_included(path):
        raise FileNotFoundError(errno.ENOENT, "not served", path)
    root = _include_root(is_included, path)
    return open_beneath(root, path[len(root) :], flags)


def _include_root(is_included: IsIncluded, path: bytes) -> bytes:
    """The shortest included ancestor of an included `path` (its include root)."""
    end = 0
    while True:
        end = path.find(b"/", end + 1)
        prefix = path if end < 0 else path[:end]
        if end < 0 or is_included(prefix):
            return prefix


def _stat_values(st: os.stat_result, keys: Sequence[str]) -> list[Any]:
    from twisted.python.filepath import Permissions

    values: dict[str, Callable[[], Any]] = {
        "size": lambda: st.st_size,
        "directory": lambda: stat.S_ISDIR(st.st_mode),
        "permissions": lambda: Permissions(stat.S_IMODE(st.st_mode)),
        "hardlinks": lambda: st.st_nlink,
        "modified": lambda: st.st_mtime,
        "owner": lambda: str(st.st_uid),
        "group": lambda: str(st.st_gid),
    }
    return [values[k]() for k in keys]


@functools.cache
def _classes() -> tuple[type, type, type]:
    """Build the Twisted classes on first use (see the module docstring)."""
    from twisted.cred import credentials, error
    from twisted.cred.checkers import ICredentialsChecker
    from twisted.cred.portal import IRealm
    from twisted.internet import defer
    from twisted.protocols import ftp
    from zope.interface import implementer  # type: ignore[import-untyped]

    def fail_os(e: OSError, path: Sequence[str]) -> defer.Deferred[Any]:
        if e.errno in (errno.EACCES, errno.EPERM):
            return defer.fail(ftp.PermissionDeniedError(path))
        if e.errno == errno.EISDIR:
            return defer.fail(ftp.IsADirectoryError(path))
        return defer.fail(ftp.FileNotFoundError(path))

    @implementer(ftp.IFTPShell)
    class ConfinedShell:
        """A read-only IFTPShell over the included trees."""

        def __init__(self, is_included: IsIncluded) -> None:
            self.is_included = is_included

        def _open(self, path: Sequence[str], flags: int) -> int:
            return open_served(self.is_included, segments_to_path(path), flags)

        def _stat(self, path: Sequence[str]) -> os.stat_result:
            fd = self._open(path, os.O_PATH)  # the entry itself: a symlink is not followed
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)

        def _refuse(self, *args: Any) -> defer.Deferred[Any]:
            return defer.fail(ftp.PermissionDeniedError("read-only server"))

        makeDirectory = removeDirectory = removeFile = rename = _refuse
        openForWriting = _refuse

        def access(self, path: Sequence[str]) -> defer.Deferred[None]:
            try:
                if not stat.S_ISDIR(self._stat(path).st_mode):
                    return defer.fail(ftp.IsNotADirectoryError(path))
            except OSError as e:
                return fail_os(e, path)
            return defer.succeed(None)

        def openForReading(self, path: Sequence[str]) -> defer.Deferred[Any]:
            try:
                fd = self._open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                return fail_os(e, path)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                if stat.S_ISDIR(mode):
                    return defer.fail(ftp.IsADirectoryError(path))
                return defer.fail(ftp.FileNotFoundError(path))
            os.set_blocking(fd, True)
            return defer.succeed(ftp._FileReader(os.fdopen(fd, "rb")))

        def open_for_batch(self, path: str) -> tuple[Status, int | None]:
            """A batch's file: an fd to read, or why there is none (see ftpbatch)."""
            try:
                fd = self._open(ftp.toSegments([], path), os.O_RDONLY | os.O_NONBLOCK)
            except ftp.InvalidPath:
                return Status.MISSING, None
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM):
                    return Status.DENIED, None
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return Status.MISSING, None
                return Status.FAILED, None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return Status.NOT_A_FILE, None
            os.set_blocking(fd, True)
            return Status.OK, fd

        def stat(self, path: Sequence[str], keys: Sequence[str] = ()) -> defer.Deferred[Any]:
            try:
                return defer.succeed(_stat_values(self._stat(path), keys))
            except OSError as e:
                return fail_os(e, path)

        def list(self, path: Sequence[str], keys: Sequence[str] = ()) -> defer.Deferred[Any]:
            logical = segments_to_path(path)
            try:
                st = self._stat(path)
                if not stat.S_ISDIR(st.st_mode):
                    return defer.succeed([(os.path.basename(logical), _stat_values(st, keys))])
                fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    entries = []
                    for name in os.listdir(fd):
                        if not self.is_included(logical.rstrip(b"/") + b"/" + os.fsencode(name)):
                            continue
                        try:
                            child = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        except OSError:
                            continue  # gone meanwhile
                        entries.append((os.fsencode(name), _stat_values(child, keys)))
                finally:
                    os.close(fd)
            except OSError as e:
                return fail_os(e, path)
            return defer.succeed(entries)

    @implementer(ICredentialsChecker)
    class OneUser:
        """Accepts exactly one user name and password (constant-time compare)."""

        credentialInterfaces = (credentials.IUsernamePassword,)

        def __init__(self, user: str, password: bytes | None) -> None:
            self.user = user.encode("latin-1", "replace")
            self.password = password or b""  # empty: nobody logs in

        def requestAvatarId(self, creds: Any) -> defer.Deferred[Any]:
            user = _as_bytes(creds.username)
            given = _as_bytes(creds.password)
            ok_user = hmac.compare_digest(user, self.user)
            ok_password = hmac.compare_digest(given, self.password)
            if ok_user and ok_password and self.password:
                return defer.succeed(creds.username)
            return defer.fail(error.UnauthorizedLogin())

    @implementer(IRealm)
    class ShellRealm:
        def __init__(self, is_included: IsIncluded) -> None:
            self.is_included = is_included

        def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
            if ftp.IFTPShell not in interfaces:
                raise NotImplementedError("only IFTPShell")
            return ftp.IFTPShell, ConfinedShell(self.is_included), lambda: None

    return ConfinedShell, OneUser, ShellRealm


@functools.cache
def _protocol_class() -> type:
    from twisted.internet import defer
    from twisted.internet.interfaces import IConsumer, IPullProducer
    from twisted.logger import Logger
    from twisted.protocols import ftp
    from zope.interface import implementer

    log = Logger("mirrord.ftpserver")

    class MirrorFTP(ftp.FTP):
        """Twisted's FTP with what a client going away mid-command needs.

        Twisted's `FTP.connectionLost` sets `transport` to None, yet replies
        and the "resume reading" step of a command still under way (a RETR)
        run later and used it: `AttributeError: 'NoneType' object has no
        attribute 'resumeProducing'` (or 'write'), an unhandled error in a
        Deferred. Here a gone client gets no replies, its data connection is
        cut at once (no point sending it the rest of the file), and a
        transfer the client aborted is a 426 reply, not a logged traceback.
        Nagle is off on the control connection: otherwise each reply
        written right after another (150 then 226) waits ~40 ms for the
        client's delayed ACK, which caps a client at ~20 files a second.
        """

        def connectionMade(self) -> None:
            super().connectionMade()
            self._tcp().setTcpNoDelay(True)

        def _tcp(self) -> Any:
            """The TCP transport (zope interfaces are opaque to mypy)."""
            return self.transport

        def getDTPPort(self, factory: Any, interface: str = "") -> Any:
            """PASV/EPSV listen on the control connection's own local address (not
            every interface) and take a data connection from this client only."""
            local, peer = self._tcp().getHost().host, self._tcp().getPeer().host
            return super().getDTPPort(_OnlyFrom(factory, peer), interface=local)

        def _refuse_active(self, *args: Any) -> defer.Deferred[Any]:
            return defer.fail(ftp.CmdNotImplementedError("PORT/EPRT (use PASV or EPSV)"))

        ftp_PORT = ftp_EPRT = _refuse_active  # no connections to third parties (FTP bounce)

        FEATURES = [*ftp.FTP.FEATURES, COMMAND]

        def ftp_MRTR(self) -> defer.Deferred[Any]:
            """Many files over one data connection (fs_sync/ftpbatch.py)."""
            dtp = self.dtpInstance
            if dtp is None:
                return defer.fail(ftp.BadCmdSequenceError("PASV or EPSV required before MRTR"))
            self.setTimeout(None)
            self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR)

            def idle_timeout_again(result: object) -> object:
                self.setTimeout(self.factory.timeOut)
                return result

            return _Batch(self.shell, dtp).done.addBoth(idle_timeout_again)

        def connectionLost(self, reason: Any = None) -> None:
            self.disconnected = True  # Twisted's lineReceived resumes only if not
            dtp = self.dtpInstance
            if dtp is not None and dtp.transport is not None:
                dtp.transport.abortConnection()
            super().connectionLost(reason)

        def sendLine(self, line: str | bytes) -> None:
            if self.transport is not None:  # else the client is gone: nobody to tell
                super().sendLine(line)

        def setTimeout(self, period: float | None) -> Any:
            if self.disconnected and period is not None:
                return None  # a timeout for a closed connection would fire on None
            return super().setTimeout(period)

        def ftp_RETR(self, path: str) -> defer.Deferred[Any]:
            """Twisted's RETR, less its ASCII wrapper (bytes go as they are, in
            either TYPE) and its traceback for a transfer the client cut short."""
            dtp = self.dtpInstance
            if dtp is None:
                return defer.fail(ftp.BadCmdSequenceError("PASV or EPSV required before RETR"))
            try:
                segments = ftp.toSegments(self.workingDirectory, path)
            except ftp.InvalidPath:
                return defer.fail(ftp.FileNotFoundError(path))
            self.setTimeout(None)  # the transfer may take longer than the idle timeout

            def opened(reader: Any) -> defer.Deferred[Any]:
                if dtp.isConnected:
                    self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR)
                else:
                    self.reply(ftp.FILE_STATUS_OK_OPEN_DATA_CNX)
                return reader.send(dtp).addCallbacks(sent, aborted)

            def sent(_: object) -> tuple[str]:
                return (ftp.TXFR_COMPLETE_OK,)

            def aborted(failure: Any) -> tuple[str]:
                log.info("RETR {path} aborted: {why}", path=path, why=failure.getErrorMessage())
                return (ftp.CNX_CLOSED_TXFR_ABORTED,)

            def refused(failure: Any) -> tuple[str, str]:
                failure.trap(ftp.FTPCmdError)
                return (failure.value.errorCode, "/".join(segments))

            def idle_timeout_again(result: object) -> object:
                self.setTimeout(self.factory.timeOut)
                return result

            d = self.shell.openForReading(segments)
            d.addCallbacks(opened, refused)
            d.addBoth(idle_timeout_again)
            return d

    @implementer(IConsumer, IPullProducer)
    class _Batch:
        """One MRTR: reads the name list off the data connection, then sends the
        files as a pull producer, a few hundred KiB per call, one open file at a time."""

        def __init__(self, shell: Any, dtp: Any) -> None:
            self.shell, self.dtp = shell, dtp
            self.names = NameReader()
            self.done: defer.Deferred[Any] = defer.Deferred()
            self._index = 0
            self._fd: int | None = None
            lost = dtp.registerConsumer(self)
            if lost is None:  # the data connection is already gone
                self._finish((ftp.CNX_CLOSED_TXFR_ABORTED,))
            else:
                lost.addBoth(self._lost)

        # -- consumer of the name list --
        def registerProducer(self, producer: Any, streaming: bool) -> None:
            pass

        def unregisterProducer(self) -> None:
            pass

        def write(self, data: bytes) -> None:
            if self.done.called:
                return
            try:
                self.names.feed(data)
            except BatchError as e:
                log.warn("MRTR refused: {why}", why=str(e))
                self.dtp.transport.abortConnection()
                self._finish((ftp.SYNTAX_ERR_IN_ARGS, str(e)))
                return
            if self.names.done:
                self.dtp.transport.registerProducer(self, False)

        # -- producer of the frames --
        def resumeProducing(self) -> None:
            out: list[bytes] = []
            size = 0
            names = self.names.names
            while size < _BATCH_WRITE and self._index < len(names):
                if self._fd is None:
                    path = names[self._index].decode("latin-1")
                    status, self._fd = self.shell.open_for_batch(path)
                    out.append(bytes([status]))
                    if self._fd is None:
                        self._index += 1
                    continue
                try:
                    data = os.read(self._fd, _BATCH_READ)
                except OSError:
                    data, end = b"", Status.FAILED
                else:
                    end = Status.OK
                if data:
                    out.append(chunk(data))
                    size += len(data)
                    continue
                out.append(chunk(b"") + bytes([end]))
                self._close()
                self._index += 1
            if out:
                self.dtp.transport.write(b"".join(out))
            if self._index == len(names) and not self.done.called:
                self.dtp.transport.unregisterProducer()
                self.dtp.transport.loseConnection()
                self._finish((ftp.TXFR_COMPLETE_OK,))

        def stopProducing(self) -> None:
            self._close()

        def _close(self) -> None:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

        def _lost(self, result: object) -> None:
            self._close()
            if not self.done.called:
                log.info("MRTR aborted: the data connection was closed")
                self._finish((ftp.CNX_CLOSED_TXFR_ABORTED,))

        def _finish(self, reply: tuple[str, ...]) -> None:
            if not self.done.called:
                self.done.callback(reply)

    class _OnlyFrom:
        """A listening factory that lets only `peer` connect (others are closed)."""

        def __init__(self, factory: Any, peer: str) -> None:
            self.factory, self.peer = factory, peer

        def __getattr__(self, name: str) -> Any:
            return getattr(self.factory, name)

        def buildProtocol(self, addr: Any) -> Any:
            if getattr(addr, "host", None) != self.peer:
                log.warn("FTP data connection from {host} refused", host=addr)
                return None
            return self.factory.buildProtocol(addr)

    return MirrorFTP


_BATCH_WRITE = 256 * 1024  # bytes per resumeProducing call of an MRTR
_BATCH_READ = 64 * 1024


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1", "replace")


def make_shell(is_included: IsIncluded) -> Any:
    """The confined read-only IFTPShell on its own (for tests and tools)."""
    return _classes()[0](is_included)


def make_ftp_factory(
    is_included: IsIncluded,
    user: str,
    password: bytes | None,
    *,
    timeout: int = 600,
    passive_ports: range | None = None,
    max_connections: int | None = None,
) -> Any:
    """An FTPFactory to listen on (with the global reactor: see module docstring).

    `is_included(path_bytes)` is the daemon's inclusion predicate; `user` and
    `password` the only login accepted (no or an empty password: none).
    """
    from twisted.cred.portal import Portal
    from twisted.protocols import ftp

    _, checker_class, realm_class = _classes()
    portal = Portal(realm_class(is_included), [checker_class(user, password)])
    factory = ftp.FTPFactory(portal)
    factory.protocol = _protocol_class()  # type: ignore[assignment]  # built at run time
    factory.allowAnonymous = False
    factory.timeOut = timeout
    factory.welcomeMessage = "mirrord read-only FTP"
    if passive_ports is not None:
        factory.passivePortRange = passive_ports
    if max_connections is not None:
        factory.connectionLimit = max_connections  # type: ignore[assignment]  # None in Twisted
    return factory
