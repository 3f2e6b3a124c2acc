"""Making a batch's fetched files durable before its serial is saved.

The fetchers are built with ``fsync=False``: flushing once per batch here is
about ten times faster on an INIT than one fsync per small file.  Until the
serial is saved a crash only means the batch is replayed, so this is the
one point where the data must reach the disk.
"""

from __future__ import annotations

import ctypes
import os

#: Up to this many files a batch are fsynced one by one; past it one syncfs(2)
#: of the mirror's file system is cheaper (100k 1 KiB files: 75 s -> see bench/).
FSYNC_EACH_MAX = 8

_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def make_durable(paths: list[bytes], datadir: bytes) -> None:
    """Flush ``paths`` (fetched files) to disk: one by one when few, else one syncfs."""
    if len(paths) <= FSYNC_EACH_MAX:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # replaced or removed since: a later record will say
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
