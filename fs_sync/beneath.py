"""Open a file beneath a trusted directory without following any symlink.

Checking a path and then opening it by name is a race: between the two, a
user who owns a directory inside the tree can swap it for a symlink to
``/etc`` and be served what it points to. So the path is opened one
component at a time, each relative to the descriptor of the one before it,
with ``O_NOFOLLOW``: a component that is a symlink at the moment it is
opened fails the open, and the descriptor returned is the very file that
was checked. The kernel's ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``
(Linux 5.6) does the same in one call; Python has no binding for it, so it
is called through ``ctypes`` where the kernel has it, and the walk is what
runs elsewhere, and whenever ``openat2`` refuses with ``ELOOP`` (the walk
then says which component was the symlink). On a 100,000-file INIT the walk
was about 15% of the fetch threads' time: five ``openat`` + ``fstat`` +
``close`` rounds per file against one system call.

The root itself is opened normally: it is configured by the administrator
(an include root or ``fssync.root``), and may be a symlink or a mount.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys

#: Intermediate components: a handle to walk through, needing only search
#: permission (``O_PATH``), never a symlink (``O_NOFOLLOW`` with ``O_PATH``
#: opens the link itself, which the ``fstat`` below refuses).
_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


#: openat2(2): its number is the same on every Linux architecture.
_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
#: What openat2 answers that the walk must look at again: a symlink somewhere
#: (which one?), and the kernel's "retry" answers for a path renamed meanwhile.
_ASK_THE_WALK = frozenset({errno.ELOOP, errno.EAGAIN, errno.EXDEV, errno.EINVAL})


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _find_syscall() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None


_syscall = _find_syscall()  # None: no openat2 here, or the kernel refused it once (ENOSYS)


def _openat2(dir_fd: int, rel: bytes, flags: int) -> int:
    """``openat2(dir_fd, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``; -1: use the walk.

    Raises OSError for the answers the walk would give too (ENOENT, ENOTDIR,
    EACCES, ...); returns -1 when the walk must decide (see ``_ASK_THE_WALK``).
    """
    global _syscall
    call = _syscall
    if call is None or b"\0" in rel:  # a C string would end at the NUL: the walk refuses it
        return -1
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE)
    fd = call(  # type: ignore[operator]
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(rel),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd >= 0:
        return int(fd)
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EPERM):  # an old kernel, or a seccomp filter
        _syscall = None
        return -1
    if code in _ASK_THE_WALK:
        return -1
    raise OSError(code, os.strerror(code), rel)


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


def open_root(root: bytes) -> int:
    """A handle on ``root`` for ``open_beneath(..., root_fd=)``: followed if a symlink."""
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_beneath(
    root: bytes, rel: bytes, flags: int = os.O_RDONLY, *, root_fd: int | None = None
) -> int:
    """An fd for ``root/rel`` opened with ``flags``, no symlink followed below ``root``.

    ``rel`` empty opens the root itself. The last component is opened with
    ``flags | O_NOFOLLOW`` (a symlink there: ``ELOOP``); one before it that
    is a symlink raises :class:`SymlinkInPath`, one that is not a directory
    ``ENOTDIR``. The caller owns (and closes) the descriptor. ``root_fd``
    (from ``open_root(root)``, kept by the caller for a batch of opens)
    spares opening the root again for each file.
    """
    names = components(rel)
    if not names:
        return os.open(root, flags | os.O_CLOEXEC)
    flags |= os.O_NOFOLLOW
    if root_fd is not None:
        fd = _openat2(root_fd, b"/".join(names), flags)
        if fd >= 0:
            return fd
        return _walk(os.dup(root_fd), names, flags, rel)
    fd = open_root(root)
    try:
        got = _openat2(fd, b"/".join(names), flags)
    except BaseException:
        os.close(fd)
        raise
    if got >= 0:
        os.close(fd)
        return got
    return _walk(fd, names, flags, rel)


def _walk(fd: int, names: list[bytes], flags: int, rel: bytes) -> int:
    """Open ``names`` below the directory ``fd`` one component at a time; closes ``fd``."""
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
        return os.open(names[-1], flags | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
