"""Replace a small state file so that a crash leaves the old or the new one.

Write a sibling temporary file, fsync it, rename it over the old name and
fsync the directory: a reader (or the next start after a kill -9 or a power
loss) sees either the whole old content or the whole new one.
"""

from __future__ import annotations

import os


def replace_file(path: bytes | str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Atomically make ``path`` hold ``data`` (blocking; small files only).

    ``durable=False`` skips the fsyncs: the file survives a killed process,
    and a power loss leaves the old or the new content, not necessarily the new.
    """
    path = os.fsencode(path)
    directory = os.path.dirname(path) or b"."
    temp = b"%s.%d.tmp" % (path, os.getpid())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    os.rename(temp, path)
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
