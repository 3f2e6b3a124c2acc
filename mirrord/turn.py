"""What the monitor said during one reactor turn, in order, ready to be written.

The journal writes a turn in one store transaction at its end; until then
this queue only remembers, and does no I/O. Two rules keep it short and the
story right:

- a path told dirty again since the last rename is merged into its queued
  item (flags OR-ed, ``present`` AND-ed: a delete among them says it is gone);
- a rename re-queues, under the new name and after the rename, what is
  queued dirty under the old one: by the end of the turn it only exists
  there. An index of queued paths and their ancestors finds those items
  without reading the whole queue, which stays O(1) per event in the common
  case of a rename with nothing queued below it.

Pure: values in (``mirrord.values``), values out.
"""

from __future__ import annotations

from collections.abc import Iterable

from mirrord.paths import overlaps, parent_path
from mirrord.values import Change, Computed, Dirty, QueueItem, Renamed

__all__ = ["REMAP_LIMIT", "TurnQueue"]

REMAP_LIMIT = 10_000  # longer queues skip re-queueing (still correct, only noisier)


class TurnQueue:
    """The items of one turn; :meth:`drain` hands them over and starts the next."""

    def __init__(self) -> None:
        self._items: list[QueueItem | None] = []  # None: re-queued by a rename
        self._mark = -1  # index of the last rename queued: dirty paths merge only after it
        self._at: dict[bytes, list[int]] = {}  # dirty path -> its queue indices
        self._above: set[bytes] = set()  # ancestors of those paths (a superset: may be stale)

    def __len__(self) -> int:
        return len(self._items)

    def dirty(self, item: Dirty) -> None:
        """Queue ``item``, merged into the same path's item if queued since the last rename."""
        path = item.path
        at = self._at.get(path)
        if at and at[-1] > self._mark:
            queued = self._items[at[-1]]
            assert isinstance(queued, Dirty)
            self._items[at[-1]] = queued.merged(item.recursive, item.written, item.present)
            return
        if at is None:
            at = self._at[path] = []
            up, above = path, self._above
            while up != b"/" and (up := parent_path(up)) not in above:
                above.add(up)  # ancestors of a known one are known
        at.append(len(self._items))
        self._items.append(item)

    def renamed(self, item: Renamed) -> None:
        """Queue a rename; what is queued dirty under its source follows it."""
        src, dst = item.src, item.dst
        follow: list[Dirty] = []
        if src not in self._above:  # nothing queued below ``src``: O(1) per queued ``src``
            for index in self._at.pop(src, ()):
                queued = self._items[index]
                assert isinstance(queued, Dirty)
                follow.append(Dirty(dst, queued.recursive, queued.written, queued.present))
                self._items[index] = None
        elif len(self._items) <= REMAP_LIMIT:
            for index, queued in enumerate(self._items):
                match queued:
                    case Dirty(path, recursive, written, present) if overlaps(path, src) and len(
                        path
                    ) >= len(src):
                        follow.append(Dirty(dst + path[len(src) :], recursive, written, present))
                        self._items[index] = None
                        self._at.pop(path, None)
        self._items.append(item)
        self._mark = len(self._items) - 1
        for moved in follow:
            self.dirty(moved)

    def add(self, changes: Iterable[Change]) -> None:
        """Queue changes computed elsewhere."""
        self._items.append(Computed(tuple(changes)))

    def drain(self) -> list[QueueItem]:
        """The turn's items in order; the queue is empty afterwards."""
        items = [item for item in self._items if item is not None]
        self._items, self._mark = [], -1
        self._at, self._above = {}, set()
        return items
