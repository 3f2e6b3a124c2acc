"""The `local` backend: copy from a path on this host (a second disk, an
NFS or SMB mount of the worker).

Copies run in a small dedicated thread pool, block by block, so a big file
never sits in memory and the reactor never waits on a slow mount.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from fs_sync.atomic import copy_fd
from fs_sync.beneath import SymlinkInPath, open_beneath, open_root
from fs_sync.interface import FetchItem, Outcome, Result, is_local_disk_error

_GONE = (errno.ENOENT, errno.ENOTDIR)


def fetch_one(
    root: bytes,
    item: FetchItem,
    tmpdir: bytes | None = None,
    fsync: bool = True,
    root_fd: int | None = None,
) -> Result:
    """Copy `root + item.remote` to `item.local` (blocking; runs in a thread).

    No symlink below ``root`` is followed, in the file's name or in any
    directory above it (:mod:`fs_sync.beneath`): on a mount of the worker, a
    symlink resolves on this host and could pull its own files into the mirror.
    ``root_fd`` is an ``open_root(root)`` handle kept for a whole batch.
    A directory at `item.local` is found by the final rename, which refuses
    to replace it: FAILED, and the directory stays.
    """
    try:
        # O_NONBLOCK: a FIFO must not hang the copy.
        flags = os.O_RDONLY | os.O_NONBLOCK
        fd = open_beneath(root or b"/", item.remote, flags, root_fd=root_fd)
    except SymlinkInPath:
        return (item, Outcome.NOT_A_FILE, "a directory in its path is a symlink")
    except OSError as e:
        if e.errno in _GONE:
            return (item, Outcome.VANISHED, os.strerror(e.errno))
        if e.errno == errno.ELOOP:
            return (item, Outcome.NOT_A_FILE, "is a symlink")
        return (item, Outcome.FAILED, f"open: {e.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return (item, Outcome.NOT_A_FILE, "not a regular file")
        os.set_blocking(fd, True)
        copy_fd(
            fd, item.local, tmpdir, like=st, fsync=fsync
        )  # mode and mtime even if a record lacks them
    except IsADirectoryError:
        return (item, Outcome.FAILED, "local path is a directory")
    except OSError as e:
        if is_local_disk_error(e):
            raise  # the mirror's disk, not this file: the whole fetch waits
        return (item, Outcome.FAILED, f"copy: {e.strerror or e}")
    finally:
        os.close(fd)
    return (item, Outcome.DONE, "")


class LocalFetcher:
    """Fetcher reading `root + path` from the local filesystem."""

    keeps_mtime = True  # a fetched file has the source's mtime until the record's is set

    def __init__(
        self,
        root: bytes,
        reactor: IReactorFromThreads,
        threads: int = 2,
        tmpdir: bytes | None = None,
        fsync: bool = True,
    ) -> None:
        self.fsync = fsync
        self.root = root.rstrip(b"/")
        self.tmpdir = tmpdir
        self._reactor = reactor
        self.threads = max(1, threads)
        self._pool = ThreadPool(minthreads=0, maxthreads=self.threads, name="fs_sync-local")
        self._pool.start()

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]:
        """Spread over the pool's threads (the copies are syscalls, which let go of
        the GIL); a given local path always goes to the same share, so two copies
        of one file never race. Fails only once every share has stopped."""
        batch = list(items)
        shares: list[list[FetchItem]] = [[] for _ in range(self.threads)]
        for item in batch:
            shares[zlib.crc32(item.local) % self.threads].append(item)
        ds = [
            deferToThreadPool(self._reactor, self._pool, self._fetch_share, share)
            for share in shares
            if share
        ]

        def in_order(per_share: list[tuple[bool, Any]]) -> list[Result] | Failure:
            failures: list[Failure] = [value for ok, value in per_share if not ok]
            if failures:
                return failures[0]
            by_item = {id(r[0]): r for _, results in per_share for r in results}
            return [by_item[id(item)] for item in batch]

        return DeferredList(ds, consumeErrors=True).addCallback(in_order)

    def _fetch_share(self, share: list[FetchItem]) -> list[Result]:
        """One thread's items, with one handle on the root for all of them (blocking).

        A root that cannot be opened (an unmounted share) gives each item its
        own answer, as the opens one by one did.
        """
        root = self.root or b"/"
        try:
            root_fd: int | None = open_root(root)
        except OSError:
            root_fd = None
        try:
            return [fetch_one(root, i, self.tmpdir, self.fsync, root_fd) for i in share]
        finally:
            if root_fd is not None:
                os.close(root_fd)

    def close(self) -> Deferred[None]:
        self._pool.stop()
        return succeed(None)
