"""The seam over the kernel's inotify: syscalls, limits, and the reactor reader.

The syscalls and the record parser are ``fs_sync.inotify``'s, the seam
mirrord shares with the rsync backend; no pyinotify WatchManager/Notifier:
those keep a heavy object and a full path per watch, and we keep our own
compact map (``watches.py``).  Paths are bytes all the way down, so a name
that is not valid UTF-8 is watched like any other.

Kernel errors become our own exceptions, so callers never match errno or
message text: :class:`WatchLimitReached` (its message names the sysctl to
raise), :class:`PathGone` (the directory vanished or is no longer one) and
:class:`PathUnreadable` (we may not read it: a ``PermissionError``, so the
scanner, which knows nothing of inotify, treats it as it treats ``listdir``).

The watch mask has no IN_MODIFY: it fires on every ``write()``, which floods
the queue (and overflows it) during big copies, and a file being written is
not worth fetching yet.  IN_CLOSE_WRITE reports a finished write once.  The
cost: a file written through a descriptor that stays open (an appending log)
is seen when it is closed or at the next rescan.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer  # type: ignore[import-untyped]

from fs_sync.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_DONT_FOLLOW,
    IN_EXCL_UNLINK,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    RawEvent,
    libc,
    parse,
)

WATCH_MASK: int = (
    IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CLOSE_WRITE
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_DONT_FOLLOW
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)

READ_CHUNK = 256 * 1024
PROC_DIR = "/proc/sys/fs/inotify"
MIN_QUEUED_EVENTS = 16384  # the kernel's default; below it overflows (full rescans) come often


class Binding(Protocol):
    """The syscalls: ``fs_sync.inotify.Libc`` (or a test's fake)."""

    def inotify_init(self) -> int: ...

    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int: ...

    def inotify_rm_watch(self, fd: int, wd: int) -> int: ...

    def get_errno(self) -> int | None: ...


class ReaderReactor(Protocol):
    """The reactor as :class:`InotifyReader` uses it (``IReactorFDSet``)."""

    def addReader(self, reader: InotifyReader, /) -> None: ...  # noqa: N802 - Twisted's

    def removeReader(self, reader: InotifyReader, /) -> None: ...  # noqa: N802


class WatchLimitReached(Exception):
    """No more inotify watches (ENOSPC, or our own ``max_watches`` cap)."""


class PathGone(Exception):
    """The path to watch no longer exists or is no longer a directory."""


class PathUnreadable(PermissionError):
    """We may not watch the directory (EACCES, EPERM): it is not ours to read."""


@dataclass(frozen=True)
class Limits:
    max_user_watches: int
    max_queued_events: int
    max_user_instances: int


def read_limits(proc_dir: str = PROC_DIR) -> Limits:
    """The inotify sysctls, read from ``/proc/sys/fs/inotify``."""

    def value(name: str) -> int:
        with open(os.path.join(proc_dir, name), "rb") as f:
            return int(f.read().strip())

    return Limits(
        max_user_watches=value("max_user_watches"),
        max_queued_events=value("max_queued_events"),
        max_user_instances=value("max_user_instances"),
    )


def suggested_watches(needed: int) -> int:
    """Room for ``needed`` directories, growth, and other programs of the same user."""
    want = needed + needed // 4 + 8192
    return -(-want // 1024) * 1024


def _raise_hint(key: str, value: int) -> str:
    return (
        f"raise it now with 'sysctl -w fs.inotify.{key}={value}' and keep it across "
        f"reboots with a line 'fs.inotify.{key} = {value}' in /etc/sysctl.d/90-mirrord.conf"
    )


def check_limits(limits: Limits, needed_watches: int) -> list[str]:
    """Warnings, each naming the sysctl to raise and the value to raise it to."""
    warnings = []
    if needed_watches > limits.max_user_watches:
        warnings.append(
            f"inotify: {needed_watches} directories to watch but "
            f"fs.inotify.max_user_watches is {limits.max_user_watches}; directories past "
            f"the limit are polled (slower); "
            + _raise_hint("max_user_watches", suggested_watches(needed_watches))
        )
    if limits.max_queued_events < MIN_QUEUED_EVENTS:
        warnings.append(
            f"inotify: fs.inotify.max_queued_events is {limits.max_queued_events}; bursts "
            f"overflow the queue and force full rescans; "
            + _raise_hint("max_queued_events", MIN_QUEUED_EVENTS)
        )
    return warnings


def limit_message(limits: Limits | None, cap: int | None = None) -> str:
    """The text of a :class:`WatchLimitReached`: what ran out and how to raise it."""
    if cap is not None:
        return f"inotify watch cap of {cap} (watch.max) reached; raise watch.max or set it to 0"
    current = "" if limits is None else f" ({limits.max_user_watches})"
    target = 2 * limits.max_user_watches if limits is not None else 1048576
    return f"inotify watch limit fs.inotify.max_user_watches{current} reached; " + _raise_hint(
        "max_user_watches", target
    )


class Inotify:
    """One inotify instance: a nonblocking, close-on-exec descriptor and its watches.

    ``max_watches`` is a soft cap on live watches (tests, or a safety margin
    below the kernel's per-user limit).  With it set, live wds are counted
    in a set; the reader reports dropped watches through :meth:`forget`.
    """

    def __init__(self, max_watches: int | None = None, wrapper: Binding | None = None) -> None:
        self._wrapper: Binding = wrapper if wrapper is not None else libc()
        fd = self._wrapper.inotify_init()
        if fd < 0:
            code = self._wrapper.get_errno() or errno.EIO
            raise OSError(code, f"inotify_init failed: {os.strerror(code)}")
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        self._fd = fd
        self.max_watches = max_watches
        self._live: set[int] | None = set() if max_watches is not None else None

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def add_watch(self, path: bytes, mask: int = WATCH_MASK) -> int:
        """Watch the directory ``path``; return its wd (the same wd if already watched)."""
        if b"\0" in path:
            raise PathGone(f"path contains a NUL byte: {path!r}")
        wd = self._wrapper.inotify_add_watch(self._fd, path, mask)
        if wd >= 0:
            live = self._live
            if live is not None and wd not in live:
                if self.max_watches is not None and len(live) >= self.max_watches:
                    # a new watch past our cap: give it back (re-watching is always fine)
                    self._wrapper.inotify_rm_watch(self._fd, wd)
                    raise WatchLimitReached(limit_message(None, self.max_watches))
                live.add(wd)
            return wd
        code = self._wrapper.get_errno() or errno.EIO
        shown = os.fsdecode(path)
        if code == errno.ENOSPC:
            try:
                limits: Limits | None = read_limits()
            except (OSError, ValueError):
                limits = None
            raise WatchLimitReached(limit_message(limits))
        if code in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise PathGone(f"{shown}: {os.strerror(code)}")
        if code in (errno.EACCES, errno.EPERM):
            raise PathUnreadable(code, f"inotify_add_watch {shown}: {os.strerror(code)}")
        raise OSError(code, f"inotify_add_watch {shown}: {os.strerror(code)}")

    def rm_watch(self, wd: int) -> None:
        """Stop a watch; a wd the kernel already dropped (EINVAL) is fine."""
        self.forget(wd)
        if self._wrapper.inotify_rm_watch(self._fd, wd) < 0:
            code = self._wrapper.get_errno() or errno.EIO
            if code != errno.EINVAL:
                raise OSError(code, f"inotify_rm_watch {wd}: {os.strerror(code)}")

    def forget(self, wd: int) -> None:
        """The kernel dropped ``wd`` (IN_IGNORED): it no longer counts against the cap."""
        if self._live is not None:
            self._live.discard(wd)

    def read(self, size: int = READ_CHUNK) -> bytes:
        """Whatever the kernel has queued, up to ``size`` bytes; b"" when nothing is."""
        try:
            return os.read(self._fd, size)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


@implementer(IReadDescriptor)
class InotifyReader:
    """Reactor reader: on readable, drain the descriptor and hand parsed events on.

    ``on_events`` gets every complete event in order; a partial record stays
    buffered for the next read.  An exception from ``on_events`` is logged
    and the reader keeps going: a reader that raised would be disconnected by
    the reactor and changes would stop being seen, silently.  The events it
    was handling are lost, and which paths they named is not known here, so
    the reader then hands on an ``IN_Q_OVERFLOW`` of its own: the handler
    rescans the tree, as after a real overflow.
    """

    log = Logger()

    def __init__(
        self,
        inotify: Inotify,
        on_events: Callable[[list[RawEvent]], object],
        reactor: ReaderReactor,
        max_chunks: int = 16,
        log: Logger | None = None,
    ) -> None:
        if log is not None:
            self.log = log
        self.inotify = inotify
        self.on_events = on_events
        self.reactor = reactor
        self.max_chunks = max_chunks
        self._tail = b""
        self.reading = False

    def startReading(self) -> None:
        if not self.reading:
            self.reading = True
            self.reactor.addReader(self)

    def stopReading(self) -> None:
        if self.reading:
            self.reading = False
            self.reactor.removeReader(self)

    def fileno(self) -> int:
        return self.inotify.fileno()

    def logPrefix(self) -> str:
        return "inotify"

    def doRead(self) -> None:
        # At most max_chunks reads per turn so a storm cannot starve the reactor;
        # the descriptor stays readable and we are called again.
        for _ in range(self.max_chunks):
            data = self.inotify.read()
            if not data:
                return
            self.feed(data)
            if len(data) < READ_CHUNK // 2:
                return

    def feed(self, data: bytes) -> None:
        """Parse ``data`` after any buffered partial record and deliver the events."""
        events, self._tail = parse(self._tail + data if self._tail else data)
        if not events:
            return
        for event in events:
            if event.mask & IN_IGNORED:
                self.inotify.forget(event.wd)
        try:
            self.on_events(events)
        except Exception as e:
            self.log.error(
                "inotify: handling {count} events failed ({error!r}); rescanning the tree",
                count=len(events),
                error=e,
            )
            try:
                self.on_events([RawEvent(-1, IN_Q_OVERFLOW, 0, b"")])
            except Exception:
                self.log.failure("inotify: the rescan after a failed handler failed too")

    def connectionLost(self, reason: object) -> None:
        self.reading = False
