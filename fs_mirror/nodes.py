"""Small shared pieces of replay: counters, metadata merging, removing a node.

Kept apart from ``fs_mirror.apply`` so the client and sinks can use the
counters without the applier, and the applier stays about the confinement
and ordering rules.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, replace

from protocol.records import Meta


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
