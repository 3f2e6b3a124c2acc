"""Where a chunk's progress on disk must be saved so that its replay never loses a moved tree.

Records are idempotent one by one, and a chunk interrupted by a kill -9 is
replayed from the last serial saved.  A MOVE is the exception: replayed
after the records around it, it may find its source made anew (a CREATE or
FWRITE below it re-made the directory, before or after the MOVE) and then
replace the real moved tree at the destination with that near-empty one.
That is how a renamed directory's files vanished from a mirror killed at
the wrong moment.

So the applier notes "records up to here are on disk" (``State.save_applied``)
just before a MOVE when a record since the last note touches its source or
destination, and just after it when a later record of the chunk does.  A
replay then starts either at the MOVE, with its source as it was, or after
it.  A chunk whose MOVEs stand apart costs no note at all; the checkpoints
are worked out once per chunk from path indexes, not by comparing every
pair of records.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from protocol.records import Action, Record

#: Records that replace or remove what is at their path (and below it):
#: replayed at an ancestor of a MOVE's source or destination, they reach it.
_REPLACING = (Action.DELETE, Action.MOVE, Action.SYMLINK)


def checkpoints(records: Sequence[Record], start: int = 0) -> list[int]:
    """Indices ``i`` (ascending) after which ``records[: i + 1]`` being on disk must be saved.

    ``start`` is the first record this run applies (those before it were
    applied by a killed run and only booked).
    """
    moves = [i for i in range(start, len(records)) if records[i].action is Action.MOVE]
    if not moves:
        return []
    index = _Index(records)
    marks: list[int] = []
    last = start - 1  # a replay begins right after the last saved mark
    for m in moves:
        src, dst = records[m].path, records[m].target
        assert dst is not None
        if m - 1 > last and index.touches(src, dst, last + 1, m):
            marks.append(m - 1)
            last = m - 1
        if index.touches(src, dst, m + 1, len(records)):
            marks.append(m)
            last = m
    return marks


class _Index:
    """Which records reach a path: at or below it, or replacing one of its ancestors."""

    def __init__(self, records: Sequence[Record]) -> None:
        self._at_or_under: dict[bytes, list[int]] = {}  # ancestor-or-self -> record indices
        self._replacing: dict[bytes, list[int]] = {}  # exact path -> indices of _REPLACING
        for i, record in enumerate(records):
            # A SYMLINK's target is the link's text, not a path in the mirror.
            moved = record.action is Action.MOVE and record.target is not None
            for path in (record.path, record.target) if moved else (record.path,):
                assert path is not None
                for top in _self_and_ancestors(path):
                    self._at_or_under.setdefault(top, []).append(i)
                if record.action in _REPLACING:
                    self._replacing.setdefault(path, []).append(i)

    def touches(self, src: bytes, dst: bytes, lo: int, hi: int) -> bool:
        """A record with index in ``[lo, hi)`` reaches ``src`` or ``dst``."""
        if lo >= hi:
            return False
        for path in (src, dst):
            if _any_in(self._at_or_under.get(path), lo, hi):
                return True
            for top in _self_and_ancestors(path):
                if top != path and _any_in(self._replacing.get(top), lo, hi):
                    return True
        return False


def _any_in(indices: list[int] | None, lo: int, hi: int) -> bool:
    if not indices:
        return False
    at = bisect_left(indices, lo)
    return at < len(indices) and indices[at] < hi


def _self_and_ancestors(path: bytes) -> Iterator[bytes]:
    """``/a/b/c``, ``/a/b``, ``/a`` (never ``/``: no MOVE has it as source or destination)."""
    while path and path != b"/":
        yield path
        path = path.rpartition(b"/")[0]
