"""Daily backups of the mirror as trees of hard links.

``BACKDIR/HOST/YYYY-MM-DD`` gets the mirror's directories (fresh, with their
modes), its symlinks (copied) and its files as hard links: a day's backup
costs one directory entry per file, and since fs_mirror replaces files by
rename and unshares a file before changing its metadata, a backup never
changes after it is taken.  The tree is built under a temporary name and
renamed into place, so a dated directory is always complete.  The walk
streams (one ``scandir`` per level of the current branch), so a mirror of
millions of files costs no memory.  Dated directories older than ``keep``
days are then removed.

Run it by hand with ``python -m fs_mirror.rotate DATADIR BACKDIR HOST``
(or ``fs_mirror --rotate``); fs_mirror also runs it daily at ``rotate.at``,
between batches.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import stat
import sys

from fs_mirror.state import RESERVED
from fs_sync.atomic import AtomicFile
from protocol.paths import is_under

_DATED = re.compile(rb"\d{4}-\d{2}-\d{2}")
_TMP_PREFIX = b".rotating-"


class RotateError(Exception):
    """Rotation cannot work with these directories; the message says why."""


def _copy_dir_meta(st: os.stat_result, path: bytes, as_root: bool) -> None:
    if as_root:
        os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def link_tree(source: bytes, dest: bytes, *, skip_top: frozenset[bytes] = RESERVED) -> int:
    """Mirror ``source`` into the new directory ``dest`` with hard links; returns files linked."""
    as_root = os.geteuid() == 0
    os.mkdir(dest, 0o700)
    linked = 0
    # Each frame: (scandir iterator, source dir, dest dir, source dir's stat).
    stack = [(os.scandir(source), source, dest, os.stat(source))]
    try:
        while stack:
            it, src_dir, dst_dir, dir_st = stack[-1]
            entry = next(it, None)
            if entry is None:
                it.close()
                stack.pop()
                _copy_dir_meta(dir_st, dst_dir, as_root)  # after its contents: keeps mtime
                continue
            if len(stack) == 1 and entry.name in skip_top:
                continue
            target = os.path.join(dst_dir, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(target, 0o700)
                stack.append((os.scandir(entry.path), entry.path, target, st))
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), target)
                if as_root:
                    os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                os.link(entry.path, target, follow_symlinks=False)
                linked += 1
            # sockets, FIFOs and devices are never mirrored: nothing to keep
    finally:
        for frame in stack:
            frame[0].close()
    return linked


def unshare(path: bytes, as_root: bool) -> None:
    """Give file ``path`` an inode of its own (same content, mode, owner, times).

    fs_mirror calls this before changing the metadata of a file that has
    other links, so a backup's copy keeps the mode and times it had.
    """
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        # A temporary beside it, renamed over it, as for a fetched file (not fsynced, as before).
        with AtomicFile(path, fsync=False) as copy:
            while block := os.read(src, 1 << 20):
                copy.write(block)
            st = os.fstat(src)
            if as_root:
                os.fchown(copy.fd, st.st_uid, st.st_gid)  # before chmod: it clears set-id bits
            os.fchmod(copy.fd, stat.S_IMODE(st.st_mode))
            os.utime(copy.fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            copy.commit()
    finally:
        os.close(src)


def prune(hostdir: bytes, today: datetime.date, keep: int) -> list[bytes]:
    """Remove dated directories ``keep`` days old or more; returns their names."""
    oldest_kept = today - datetime.timedelta(days=keep - 1)
    removed = []
    with os.scandir(hostdir) as it:
        entries = [e for e in it if _DATED.fullmatch(e.name)]  # one per day: small
    for entry in entries:
        try:
            day = datetime.date.fromisoformat(entry.name.decode("ascii"))
        except ValueError:
            continue
        if day < oldest_kept and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
            removed.append(entry.name)
    return sorted(removed)


def check_backdir(mirror_root: bytes | str, backdir: bytes | str) -> None:
    """Refuse a backdir inside the mirror: INIT would sweep it and rotation copy it."""
    root = os.path.realpath(os.fsencode(mirror_root))
    back = os.path.realpath(os.fsencode(backdir))
    if is_under(back, root):
        raise RotateError(
            f"rotate.backdir {os.fsdecode(backdir)!r} is inside the mirror"
            f" {os.fsdecode(mirror_root)!r}: put it beside it on the same filesystem"
        )


def rotate(
    mirror_root: bytes | str,
    backdir: bytes | str,
    host: str,
    today: datetime.date,
    keep: int = 14,
) -> bytes:
    """Make ``backdir/host/today`` from ``mirror_root``, prune old days; returns the new dir."""
    if keep < 1:
        raise RotateError("rotate.keep must be at least 1")
    if not host or "/" in host or host in (".", ".."):
        raise RotateError(f"rotate.host {host!r} is not a usable directory name")
    check_backdir(mirror_root, backdir)
    root = os.fsencode(mirror_root)
    hostdir = os.path.join(os.fsencode(backdir), os.fsencode(host))
    os.makedirs(hostdir, exist_ok=True)
    if os.stat(hostdir).st_dev != os.stat(root).st_dev:
        raise RotateError(
            f"rotate.backdir {os.fsdecode(backdir)!r} is on another filesystem than the"
            f" mirror {os.fsdecode(root)!r}: hard links need the same filesystem"
        )
    name = today.isoformat().encode("ascii")
    final = os.path.join(hostdir, name)
    tmp = os.path.join(hostdir, _TMP_PREFIX + name)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)  # left by an interrupted rotation
    try:
        link_tree(root, tmp)
        if os.path.lexists(final):
            shutil.rmtree(final)  # rotated twice in a day: the later one wins
        os.rename(tmp, final)
    except BaseException:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp)
        raise
    prune(hostdir, today, keep)
    return final


def main(argv: list[str] | None = None) -> int:
    """``python -m fs_mirror.rotate DATADIR BACKDIR HOST [--keep N]``."""
    parser = argparse.ArgumentParser(prog="python -m fs_mirror.rotate", description=__doc__)
    parser.add_argument("datadir")
    parser.add_argument("backdir")
    parser.add_argument("host")
    parser.add_argument("--keep", type=int, default=14)
    args = parser.parse_args(argv)
    try:
        made = rotate(args.datadir, args.backdir, args.host, datetime.date.today(), args.keep)
    except (RotateError, OSError) as e:
        print(f"rotate: {e}", file=sys.stderr)
        return 1
    print(f"rotated into {os.fsdecode(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
