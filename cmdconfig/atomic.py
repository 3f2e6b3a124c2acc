"""Replace a small state file so that a crash leaves the old or the new one.

Write a temporary file, fsync it, rename it over the old name and fsync the
directory: a reader (or the next start after a kill -9 or a power loss) sees
either the whole old content or the whole new one.  Every state file the
commands own (fs_info's list files, the pidfile, fs_mirror's ``sn``, owed
and applied files) is written here, so there is one way of doing it.
Fetched file contents are another job, streamed block by block: see
``fs_sync.atomic``.
"""

from __future__ import annotations

import fcntl
import os


def replace_file(
    path: bytes | str,
    data: bytes,
    mode: int = 0o600,
    durable: bool = True,
    *,
    tmpdir: bytes | str | None = None,
) -> None:
    """Atomically make ``path`` hold ``data`` (blocking; small files only).

    ``durable=False`` skips the fsyncs: the file survives a killed process,
    and a power loss leaves the old or the new content, not necessarily the new.
    The temporary file is a sibling of ``path`` unless ``tmpdir`` (on the
    same file system) is given, for a directory where no stray name may appear.
    """
    os.close(_replace(path, data, mode, durable, tmpdir, lock=False))


def replace_locked(
    path: bytes | str, data: bytes, mode: int = 0o600, *, tmpdir: bytes | str | None = None
) -> int:
    """``replace_file`` (durable) whose new file is ``fcntl``-locked before it is renamed.

    Returns the open, locked descriptor of the new file; the caller keeps it
    open as long as it holds the lock (closing any descriptor of the file
    drops it).  Whoever tests the lock on ``path`` finds it taken throughout.
    """
    return _replace(path, data, mode, True, tmpdir, lock=True)


def _replace(
    path: bytes | str, data: bytes, mode: int, durable: bool, tmpdir: bytes | str | None, lock: bool
) -> int:
    path = os.fsencode(path)
    directory, name = os.path.split(path)
    where = os.fsencode(tmpdir) if tmpdir is not None else directory
    temp = os.path.join(where, b"%s.%d.tmp" % (name, os.getpid()))
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        if lock:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        try:
            _fsync_dir(directory or b".")
        except BaseException:
            os.close(fd)
            raise
    return fd


def _fsync_dir(directory: bytes) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
