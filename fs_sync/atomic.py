"""Temp-file-and-rename for fetched contents, shared by every backend.

This is the streaming writer: a fetched file of any size arrives block by
block into a temporary file that is renamed into place once complete.  Small
state files written whole from memory are a different job, done by
``cmdconfig.atomic.replace_file`` (fs_sync imports nothing of ours but
itself); anything else in the client that copies a file by streaming it
(``fs_mirror.rotate.unshare``) uses ``AtomicFile`` from here.

A fetched file never becomes visible half written, and an existing `local`
is replaced by rename, never written through: a hard link to the old file
(a rotated backup) keeps its old content.

Durability: each file is fsynced before its rename unless the caller passes
`fsync=False` and promises to sync the file system itself before it
records the batch as applied (fs_mirror does, once per batch: one syncfs
instead of one fsync per small file, about ten times faster on INIT).

Where the temporary file lives: in `tmpdir` when the caller gives one (a
directory of its own on the mirror's filesystem, which it empties at start,
so a `kill -9` mid-write leaves nothing inside the mirrored tree), else in
the destination's own directory with a dotted `.fsm-` name. Either way the
rename stays on one filesystem; should `tmpdir` sit on another one than a
destination (a mount point inside the mirror), the file is copied into a
sibling temporary and renamed from there.  Every failure path removes it.

Per-file cost matters on an INIT of many small files: the temporary's name
comes from a counter, created with ``O_EXCL`` (``tempfile.mkstemp`` draws
random names), a directory at ``local`` is refused by the rename itself
(``EISDIR``, atomically) instead of an ``lstat`` before it, and contents are
copied by ``sendfile(2)`` in the kernel where the file systems allow it.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from types import TracebackType

from fs_sync.interface import FetchItem, Outcome, Result

BLOCK = 1 << 20  # copy granularity: bounded memory whatever the file size
_NAME_KEEP = 200  # keep temp names under NAME_MAX (255) for long file names
_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_TRIES = 100  # names taken already (a leftover of a killed run): try the next
_serial = itertools.count()  # next() is atomic under the GIL: safe across fetch threads
#: errno values of sendfile(2) that mean "not between these two files": copy by hand.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV})


def make_temp(directory: bytes, prefix: bytes) -> tuple[int, bytes]:
    """A new file ``directory/prefix<pid>-<n>`` (mode 0600, never an existing one)."""
    base = os.path.join(directory, prefix) + b"%d-" % os.getpid()
    for _ in range(_TEMP_TRIES):
        name = base + b"%d" % next(_serial)
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", base)


def temp_prefix(local: bytes) -> tuple[bytes, bytes]:
    """(directory, prefix) for a temporary sibling of `local`."""
    directory, name = os.path.split(local)
    return directory or b".", b"." + name[:_NAME_KEEP] + b".fsm-"


def is_directory(path: bytes) -> bool:
    """True when `path` is a directory itself (a symlink to one is not)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def refuse_directory(item: FetchItem) -> Result | None:
    """The FAILED result for an item whose `local` is a directory, else None."""
    if is_directory(item.local):
        return (item, Outcome.FAILED, "local path is a directory")
    return None


class AtomicFile:
    """A temporary file beside `local`, renamed over it by `commit()`.

    Use as a context manager: leaving the block without `commit()` (an
    exception, an early return) removes the temporary file.
    """

    def __init__(self, local: bytes, tmpdir: bytes | None = None, fsync: bool = True) -> None:
        self.local = local
        self.fsync = fsync
        if tmpdir is not None:
            directory, prefix = tmpdir, b"fetch-"
        else:
            directory, prefix = temp_prefix(local)
        self.fd, self.temp = make_temp(directory, prefix)
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def commit(self, like: os.stat_result | None = None) -> None:
        """fsync, close and rename over `local` (refused if it is a directory).

        With `like` (the source's stat), the file gets its permission bits
        (never set-id bits: the temporary belongs to us, not to the source's
        owner) and mtime, as `cp -p` would; record metadata still wins later.
        """
        if like is not None:
            os.fchmod(self.fd, stat.S_IMODE(like.st_mode) & 0o777)
            os.utime(self.fd, ns=(like.st_atime_ns, like.st_mtime_ns))
        if self.fsync:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        try:
            # Over a directory: IsADirectoryError (EISDIR), and nothing is replaced.
            os.rename(self.temp, self.local)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            fd = os.open(self.temp, os.O_RDONLY)
            try:
                copy_fd(fd, self.local, fsync=self.fsync)
            finally:
                os.close(fd)
            os.unlink(self.temp)
        self._done = True

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self._done:
            self._done = True
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def copy_fd(
    src_fd: int,
    local: bytes,
    tmpdir: bytes | None = None,
    like: os.stat_result | None = None,
    fsync: bool = True,
) -> None:
    """Stream an open file descriptor into `local`, atomically (see `AtomicFile.commit`).

    From `src_fd`'s current offset to its end, block by block: by
    ``sendfile`` while the kernel can, else through a buffer of ours.
    """
    with AtomicFile(local, tmpdir, fsync) as out:
        if not _send(src_fd, out.fd):
            buffer = bytearray(BLOCK)
            view = memoryview(buffer)
            while True:
                got = os.readv(src_fd, [buffer])
                if not got:
                    break
                out.write(view[:got])
        out.commit(like)


def _send(src_fd: int, out_fd: int) -> bool:
    """Copy the rest of ``src_fd`` to ``out_fd`` in the kernel; False: nothing was sent,
    this pair of files cannot (the caller copies it by hand)."""
    sent = False
    while True:
        try:
            n = os.sendfile(out_fd, src_fd, None, BLOCK)
        except OSError as e:
            if not sent and e.errno in _NO_SENDFILE:
                return False
            raise
        if not n:
            return True
        sent = True


def install(staged: bytes, local: bytes, fsync: bool = True, *, dir_fd: int | None = None) -> None:
    """Move a complete file from a staging area over `local`, atomically.

    Same filesystem: fsync and rename. Across filesystems (EXDEV): stream it
    into a temporary sibling of `local` and rename that. With `dir_fd`,
    `staged` is a name in that directory.
    """
    if is_directory(local):
        raise IsADirectoryError(local)
    fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        if fsync:
            os.fsync(fd)
        try:
            os.rename(staged, local, src_dir_fd=dir_fd)
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        copy_fd(fd, local, fsync=fsync)
    finally:
        os.close(fd)
