"""One client's INIT: the snapshot read in chunks, each chunk ready-made wire lines.

Kept apart from the socket adapter (``mirrord.server``), which only decides
*when* a chunk is read (one per reactor turn, none while the transport is
paused); this decides *what* it holds. No Berkeley DB cursor outlives one
``iter_tree`` call: the stream remembers the last path it sent and the next
chunk starts after it. What the snapshot still holds below an unreadable
directory is not sent: the chunk ends at that directory and the next one
starts after its sub-tree.
"""

from __future__ import annotations

from typing import Any

from mirrord.values import Entry, record_of
from protocol.messages import EOF_LINE, server_lines


def snapshot_line(path: bytes, entry: Entry) -> bytes:
    """The INIT record for one snapshot entry (directory, file or symlink)."""
    return record_of(path, entry).encode()


class SnapshotStream:
    """The INIT stream of one client, at the head serial it was begun at."""

    def __init__(self, store: Any, limit: int) -> None:
        self.store, self.limit = store, limit
        self.serial: int = store.head  # the snapshot is consistent with this serial
        self.done = False  # EOF has been handed out
        self.sent = 0  # entries handed out so far (for progress lines)
        self._after: bytes | None = None  # the last path sent
        self._skip = False  # _after is an unreadable directory: skip below it

    def chunk(self) -> bytes:
        """The next entries' lines (maybe none); with ``EOF`` once the snapshot is all sent."""
        entries = self.store.iter_tree(after=self._after, limit=self.limit, skip_subtree=self._skip)
        full = len(entries) >= self.limit
        for n, (_, entry) in enumerate(entries):
            if getattr(entry, "unreadable", False):
                entries, full = entries[: n + 1], True
                break
        data = b""
        if entries:
            data = server_lines(snapshot_line(path, entry) for path, entry in entries)
            self.sent += len(entries)
            self._after = entries[-1][0]
            self._skip = bool(getattr(entries[-1][1], "unreadable", False))
        if not full:
            self.done = True
            data += EOF_LINE
        return data
