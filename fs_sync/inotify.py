"""The one seam over the kernel's inotify: its syscalls and its event records.

Two programs of ours watch with inotify: mirrord (the trees it mirrors,
``mirrord/kernel.py``) and the rsync backend (its staging directories,
``rsyncwatch.py``). Both take from here, so the C library is bound once and
the kernel's byte stream is decoded once.

:class:`Libc` is the binding: ``inotify_init``, ``inotify_add_watch`` and
``inotify_rm_watch`` from pyinotify's ctypes binding, with paths as bytes,
so a name that is not valid UTF-8 is watched like any other. It answers as
the C library does (-1, then :meth:`Libc.get_errno`); what an errno means
is the caller's to decide. :func:`libc` loads it once, when first asked.

:func:`parse` is pure: the kernel hands over ``struct inotify_event``
records; a read may in principle end inside one (tests also feed arbitrary
chunks), so it returns the events it could decode and the undecoded tail.

The mask bits are the Linux ABI values from ``<sys/inotify.h>`` (a test
checks that they equal pyinotify's).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from dataclasses import dataclass

import pyinotify  # type: ignore[import-untyped]

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the NUL-padded name)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One kernel event; ``name`` is relative to the watch, without NUL padding."""

    wd: int
    mask: int
    cookie: int
    name: bytes

    @property
    def isdir(self) -> bool:
        return bool(self.mask & IN_ISDIR)


def parse(buf: bytes) -> tuple[list[RawEvent], bytes]:
    """Decode every complete record in ``buf``; return them and the undecoded tail."""
    events: list[RawEvent] = []
    size = HEADER.size
    end = len(buf)
    offset = 0
    unpack_from = HEADER.unpack_from
    while end - offset >= size:
        wd, mask, cookie, length = unpack_from(buf, offset)
        stop = offset + size + length
        if stop > end:
            break
        name = bytes(buf[offset + size : stop]).split(b"\0", 1)[0]
        events.append(RawEvent(wd, mask, cookie, name))
        offset = stop
    return events, bytes(buf[offset:])


class Libc:
    """inotify's syscalls through pyinotify's ctypes binding of the C library.

    pyinotify is the project's inotify library; only its binding is used,
    never its WatchManager/Notifier (a heavy object and a full path per
    watch, where mirrord keeps a compact map).  Paths go to the C call as
    bytes, through the binding's ``CDLL`` (its own methods take ``str``),
    so a name that is not valid UTF-8 is watched like any other.  The
    descriptor is made nonblocking and close-on-exec in the one call
    (``inotify_init1``), so no child started meanwhile by another thread
    inherits it.  Raises OSError (ENOSYS) when the C library has no inotify.
    """

    def __init__(self) -> None:
        wrapper = pyinotify.INotifyWrapper.create()
        lib = getattr(wrapper, "_libc", None)
        if wrapper is None or lib is None:
            raise OSError(errno.ENOSYS, "no inotify binding in the C library (pyinotify)")
        try:
            init1 = lib.inotify_init1
        except AttributeError as e:
            raise OSError(errno.ENOSYS, f"no inotify_init1 in the C library ({e})") from e
        init1.argtypes = [ctypes.c_int]
        self._wrapper = wrapper
        self._init1 = init1
        self._add_watch = lib.inotify_add_watch  # pyinotify set (int, c_char_p, uint32)

    def inotify_init(self) -> int:
        return int(self._init1(os.O_NONBLOCK | os.O_CLOEXEC))

    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
        return int(self._add_watch(fd, path, mask))

    def inotify_rm_watch(self, fd: int, wd: int) -> int:
        return int(self._wrapper.inotify_rm_watch(fd, wd))

    def get_errno(self) -> int:
        """The errno of this thread's last failed call above."""
        return int(self._wrapper.get_errno())


@functools.cache
def libc() -> Libc:
    """The binding, loaded on first use."""
    return Libc()
