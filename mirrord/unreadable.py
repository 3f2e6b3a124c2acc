"""The directories mirrord cannot read: counted for ``-k status``, each logged once.

The snapshot is the truth (a directory stored with ``unreadable`` set); this
set follows every op the journal commits, so the count needs no walk of the
snapshot, and a path's problem is logged when it starts and when it ends, not
on every rescan that meets it again. Bounded logging: past ``WARNED_MAX``
paths it says once that it stops saying it.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger

from mirrord.paths import overlaps
from mirrord.values import Drop, DropTree, MoveTree, Op, Put

__all__ = ["WARNED_MAX", "Unreadable"]

WARNED_MAX = 10_000  # paths whose read problem was logged, remembered to log each once


class Unreadable:
    """``paths``: the snapshot's unreadable directories; ``warn`` logs a path once."""

    def __init__(self, log: Logger) -> None:
        self.log = log
        self.paths: set[bytes] = set()
        self._warned: set[bytes] = set()

    def track(self, ops: Iterable[Op]) -> None:
        """Keep ``paths`` equal to the snapshot's unreadable directories."""
        found = self.paths
        for op in ops:
            match op:
                case Put(path, entry) if entry.unreadable:
                    if path not in found:
                        found.add(path)
                        self.warn(path, "permission denied")
                case Put(path):
                    if found and path in found:
                        found.discard(path)
                        self._warned.discard(path)
                        self.log.info("{path} can be read again", path=show(path))
                case _ if not found:
                    continue
                case Drop(path):
                    found.discard(path)
                case DropTree(path):
                    for p in [p for p in found if overlaps(p, path) and len(p) >= len(path)]:
                        found.discard(p)
                case MoveTree(src, dst):
                    for p in [p for p in found if overlaps(p, src) and len(p) >= len(src)]:
                        found.discard(p)
                        found.add(dst + p[len(src) :])

    def warn(self, path: bytes, error: object) -> None:
        """Log a path we cannot read, once (until it can be read again)."""
        if path in self._warned:
            return
        if len(self._warned) >= WARNED_MAX:
            if len(self._warned) == WARNED_MAX:
                self._warned.add(b"")  # a marker: say once that we stop saying it
                self.log.warn("cannot read more than {n} paths; not logging the rest", n=WARNED_MAX)
            return
        self._warned.add(path)
        self.log.warn(
            "cannot read {path} ({error}): kept as it was, what is below it neither sent "
            "nor deleted, until it can be read",
            path=show(path),
            error=error,
        )


def show(path: bytes) -> str:
    """A path for a log line (never fails on a name that is not UTF-8)."""
    return path.decode(errors="replace")
