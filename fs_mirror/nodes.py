"""Small shared pieces of replay: counters, metadata, removing a node.

Kept apart from ``fs_mirror.apply`` so the client and sinks can use the
counters without the applier, and the applier stays about the ordering
rules.  Nothing here follows a symlink.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, replace

from protocol.records import Meta

_NO_META = Meta()


def show(path: bytes) -> str:
    """A path as text for humans: UTF-8 where it is, escapes where it is not."""
    return path.decode("utf-8", "backslashreplace")


@dataclass
class Stats:
    """Counters for the operator's summary lines."""

    records: int = 0
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    refused: int = 0


def merge(old: Meta, new: Meta) -> Meta:
    """``old`` updated with the fields ``new`` carries."""
    fields = ("mode", "uid", "gid", "size", "mtime_ns")
    return replace(old, **{k: getattr(new, k) for k in fields if getattr(new, k) is not None})


def differs(st: os.stat_result, meta: Meta, as_root: bool) -> bool:
    """Would applying ``meta`` change the node ``st`` describes? (Owner only as root.)"""
    return (
        (meta.mode is not None and stat.S_IMODE(st.st_mode) != meta.mode)
        or (meta.mtime_ns is not None and st.st_mtime_ns != meta.mtime_ns)
        or (as_root and meta.uid is not None and st.st_uid != meta.uid)
        or (as_root and meta.gid is not None and st.st_gid != meta.gid)
    )


def set_meta(local: bytes, meta: Meta, as_root: bool, st: os.stat_result | None = None) -> None:
    """Set owner (as root), mode and mtime; never through a symlink."""
    if meta == _NO_META:
        return
    st = st or os.lstat(local)
    link = stat.S_ISLNK(st.st_mode)
    owner = (st.st_uid, st.st_gid)
    if as_root and (meta.uid not in (None, owner[0]) or meta.gid not in (None, owner[1])):
        uid = -1 if meta.uid is None else meta.uid
        gid = -1 if meta.gid is None else meta.gid
        os.chown(local, uid, gid, follow_symlinks=False)
        st = os.lstat(local)  # chown may clear set-id bits
    if meta.mode is not None and not link and stat.S_IMODE(st.st_mode) != meta.mode:
        os.chmod(local, meta.mode)
    if meta.mtime_ns is not None and st.st_mtime_ns != meta.mtime_ns:
        os.utime(local, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)


def lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove_node(path: bytes) -> str | None:
    """Remove a file, symlink or whole tree (never following links); None when absent."""
    st = lstat(path)
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
        return "DIR"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    return "FILE"


def put_symlink(local: bytes, target: bytes, tmpdir: bytes) -> None:
    """Make ``local`` a symlink to ``target`` by renaming a new one over it.

    The new link is made in ``tmpdir`` (outside the mirrored tree, emptied at
    start), so a kill -9 leaves none behind in the mirror; a directory at
    ``local`` is removed first, since rename() only replaces an empty one.
    """
    suffix = os.urandom(8).hex().encode()  # a clash would raise, never clobber
    os.makedirs(tmpdir, mode=0o700, exist_ok=True)
    tmp = os.path.join(tmpdir, b"link-" + suffix)
    os.symlink(target, tmp)
    try:
        st = lstat(local)
        if st is not None and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(local)
        os.rename(tmp, local)
    except BaseException:
        remove_node(tmp)
        raise
