"""Open a file beneath a trusted directory without following any symlink.

Checking a path and then opening it by name is a race: between the two, a
user who owns a directory inside the tree can swap it for a symlink to
``/etc`` and be served what it points to. So the path is opened one
component at a time, each relative to the descriptor of the one before it,
with ``O_NOFOLLOW``: a component that is a symlink at the moment it is
opened fails the open, and the descriptor returned is the very file that
was checked. The kernel's ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``
does the same in one call, but Python has no binding for it; a walk of a
few ``openat`` calls costs microseconds next to a transfer.

The root itself is opened normally: it is configured by the administrator
(an include root or ``fssync.root``), and may be a symlink or a mount.
"""

from __future__ import annotations

import errno
import os
import stat

#: Intermediate components: a handle to walk through, needing only search
#: permission (``O_PATH``), never a symlink (``O_NOFOLLOW`` with ``O_PATH``
#: opens the link itself, which the ``fstat`` below refuses).
_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkInPath(OSError):
    """A component below the root is a symlink (errno ``ELOOP``): never followed."""

    def __init__(self, path: bytes) -> None:
        super().__init__(errno.ELOOP, "a component is a symlink", path)


def components(rel: bytes) -> list[bytes]:
    """The names of ``rel`` (relative to the root); ``.``, ``..`` and empty names refused.

    Records are normalised before they get here; refusing them again costs
    nothing and keeps a walk from ever climbing out of its root.
    """
    names = rel.strip(b"/").split(b"/") if rel.strip(b"/") else []
    for name in names:
        if name in (b"", b".", b".."):
            raise OSError(errno.EINVAL, "not a plain path below the root", rel)
    return names


def open_beneath(root: bytes, rel: bytes, flags: int = os.O_RDONLY) -> int:
    """An fd for ``root/rel`` opened with ``flags``, no symlink followed below ``root``.

    ``rel`` empty opens the root itself. The last component is opened with
    ``flags | O_NOFOLLOW`` (a symlink there: ``ELOOP``); one before it that
    is a symlink raises :class:`SymlinkInPath`, one that is not a directory
    ``ENOTDIR``. The caller owns (and closes) the descriptor.
    """
    names = components(rel)
    if not names:
        return os.open(root, flags | os.O_CLOEXEC)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names[:-1]:
            step = os.open(name, _STEP, dir_fd=fd)
            os.close(fd)
            fd = step
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise SymlinkInPath(rel)
            if not stat.S_ISDIR(mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
        return os.open(names[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
