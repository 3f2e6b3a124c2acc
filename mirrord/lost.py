"""Paths an event said exist, gone when their turn was written: a rename took them.

The disk runs ahead of the events the journal has read. A file created
(or written, or chmodded) and then carried away by a rename of its directory
that is told a turn later is gone when its own turn is written; the snapshot
may never have had it, so it is neither a DELETE nor anything else yet. The
same holds for the root of a follow-up walk found gone: its parent is
watched, so the event saying why is still unread. Such paths are kept here,
and looked at again under the new name once the rename is told
(``Journal._found_again``), or forgotten when the path is told again without
"it exists" or deleted for real. Bounded: past ``LOST_KEPT`` the oldest is
dropped (a verification rescan still finds it).
"""

from __future__ import annotations

from collections import OrderedDict

from protocol.paths import is_under

__all__ = ["LOST_KEPT", "LostPaths"]

LOST_KEPT = 4096  # paths kept as lost until their rename is told (oldest dropped)


class LostPaths:
    """path -> (``written``: its event was IN_CLOSE_WRITE, ``recursive``: walk it
    whole when found), oldest first."""

    def __init__(self, limit: int = LOST_KEPT) -> None:
        self.limit = limit
        self._paths: OrderedDict[bytes, tuple[bool, bool]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def keep(self, path: bytes, written: bool, recursive: bool) -> None:
        self._paths[path] = (written, recursive)
        if len(self._paths) > self.limit:
            self._paths.popitem(last=False)

    def discard(self, path: bytes) -> None:
        """``path`` itself is settled (told again without "it exists")."""
        self._paths.pop(path, None)

    def take(self, top: bytes) -> list[tuple[bytes, bool, bool]]:
        """Remove and return the paths at or below ``top`` with their flags, oldest first."""
        found = [p for p in self._paths if is_under(p, top)]
        return [(p, *self._paths.pop(p)) for p in found]

    def forget(self, top: bytes) -> None:
        """``top`` is deleted: what was kept at or below it is settled."""
        self.take(top)
