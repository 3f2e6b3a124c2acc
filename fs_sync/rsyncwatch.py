"""Seeing rsync put each staged file in place, through inotify.

rsync's receiver writes a file into a temporary name beside it, checks it
against the sender's whole-file checksum, sets its times and mode, and only
then renames it to its final name (receiver.c `finish_transfer`). A rename
onto an expected name in a staging directory that only rsync writes is
therefore a complete file. Once every name of a run has arrived so, the run
is done, ~1 ms before rsync has traded its closing messages and printed its
summary. Anything else (a name missing, too many directories to watch, an
overflowing inotify queue) leaves the run to end at its summary as before.

The syscalls and the parser of the kernel's records are ``fs_sync.inotify``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from fs_sync.inotify import IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW, Libc, libc, parse

__all__ = ["MAX_DIRS", "StagedWatch"]

#: a run whose names span more directories than this is not watched
MAX_DIRS = 256
_READ = 64 * 1024


def _check(binding: Libc, result: int) -> int:
    if result < 0:
        number = binding.get_errno()
        raise OSError(number, os.strerror(number))
    return result


class StagedWatch:
    """Watches the directories of `rels` under `staging` (created here) for their files.

    Raises OSError if inotify is unavailable or a directory cannot be made
    or watched, ValueError if the names span more than `MAX_DIRS` directories.
    """

    def __init__(self, staging: bytes, rels: Iterable[bytes]) -> None:
        wanted: dict[bytes, dict[bytes, list[bytes]]] = {}  # parent -> name -> rels
        for rel in rels:
            parent, _, name = rel.rpartition(b"/")
            wanted.setdefault(parent, {}).setdefault(name, []).append(rel)
            if len(wanted) > MAX_DIRS:
                raise ValueError("too many directories to watch")
        binding = libc()
        self.fd = _check(binding, binding.inotify_init())
        self._left: dict[int, dict[bytes, list[bytes]]] = {}  # wd -> name -> rels
        self._arrived: list[bytes] = []  # rels staged since the last take_arrived()
        self.broken = False
        try:
            for parent, names in wanted.items():
                path = staging + b"/" + parent if parent else staging
                os.makedirs(path, mode=0o700, exist_ok=True)
                wd = _check(
                    binding, binding.inotify_add_watch(self.fd, path, IN_MOVED_TO | IN_ONLYDIR)
                )
                left = self._left.setdefault(wd, {})  # a/ and a//: one directory
                for name, spelled in names.items():
                    left.setdefault(name, []).extend(spelled)
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
            events, _tail = parse(data)  # the kernel hands over whole records only
            for event in events:
                if event.mask & IN_Q_OVERFLOW:
                    self.broken = True
                left = self._left.get(event.wd)
                if left is not None and event.mask & IN_MOVED_TO:
                    self._arrived += left.pop(event.name, ())
                    if not left:
                        del self._left[event.wd]
        return not self.broken and not self._left

    def take_arrived(self) -> list[bytes]:
        """The names (as given) staged since the last call, each once."""
        arrived, self._arrived = self._arrived, []
        return arrived

    def close(self) -> None:
        os.close(self.fd)
