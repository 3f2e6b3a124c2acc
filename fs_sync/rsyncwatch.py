"""Seeing rsync put each staged file in place, through inotify.

rsync's receiver writes a file into a temporary name beside it, checks it
against the sender's whole-file checksum, sets its times and mode, and only
then renames it to its final name (receiver.c `finish_transfer`). A rename
onto an expected name in a staging directory that only rsync writes is
therefore a complete file. Once every name of a run has arrived so, the run
is done, ~1 ms before rsync has traded its closing messages and printed its
summary. Anything else (a name missing, too many directories to watch, an
overflowing inotify queue) leaves the run to end at its summary as before.

The parser is a pure function over inotify's byte stream.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import Iterable, Iterator

__all__ = ["IN_MOVED_TO", "IN_Q_OVERFLOW", "MAX_DIRS", "StagedWatch", "parse_events"]

IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
_IN_ONLYDIR = 0x01000000
#: a run whose names span more directories than this is not watched
MAX_DIRS = 16
_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ = 64 * 1024


def parse_events(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(wd, mask, name) for each whole event in `data` (the name without its NUL padding)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if start + length > len(data):
            return
        yield wd, mask, data[start : start + length].rstrip(b"\0")
        offset = start + length


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


_libc: _Libc | None = None


def _check(result: int) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


class StagedWatch:
    """Watches the directories of `rels` under `staging` (created here) for their files.

    Raises OSError if inotify is unavailable or a directory cannot be made
    or watched, ValueError if the names span more than `MAX_DIRS` directories.
    """

    def __init__(self, staging: bytes, rels: Iterable[bytes]) -> None:
        global _libc
        wanted: dict[bytes, set[bytes]] = {}
        for rel in rels:
            parent, _, name = rel.rpartition(b"/")
            wanted.setdefault(parent, set()).add(name)
            if len(wanted) > MAX_DIRS:
                raise ValueError("too many directories to watch")
        if _libc is None:
            _libc = _Libc()
        self.fd = _check(_libc.init1(os.O_NONBLOCK | os.O_CLOEXEC))
        self._left: dict[int, set[bytes]] = {}
        self.broken = False
        try:
            for parent, names in wanted.items():
                path = staging + b"/" + parent if parent else staging
                os.makedirs(path, mode=0o700, exist_ok=True)
                wd = _check(_libc.add_watch(self.fd, path, IN_MOVED_TO | _IN_ONLYDIR))
                self._left.setdefault(wd, set()).update(names)  # a/ and a//: one directory
        except BaseException:
            os.close(self.fd)
            raise

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bool:
        """Take the events there are; True once every name has arrived."""
        while True:
            try:
                data = os.read(self.fd, _READ)
            except BlockingIOError:
                break
            for wd, mask, name in parse_events(data):
                if mask & IN_Q_OVERFLOW:
                    self.broken = True
                left = self._left.get(wd)
                if left is not None and mask & IN_MOVED_TO:
                    left.discard(name)
                    if not left:
                        del self._left[wd]
        return not self.broken and not self._left

    def close(self) -> None:
        os.close(self.fd)
