"""Files just created and still being written: not worth telling yet.

``open(O_CREAT)`` gives IN_CREATE before the first byte is written and
IN_CLOSE_WRITE once the writer is done. Told at IN_CREATE, a new file is
logged and fetched twice, the first time empty or half-written: twice the
records, twice the transfers, and the mirror holds a truncated file for a
moment. So the monitor holds a new regular file here until its close, and
tells it then, once. A file that is never closed for writing (a hard link,
``O_CREAT`` with ``O_RDONLY``, a writer that keeps it open) is told when its
``wait`` runs out, as it would have been told before, only later.

Pure: paths and times in, paths out, in the order they were created.
Bounded by ``max_pending``: past it the oldest is let go at once.
"""

from __future__ import annotations

__all__ = ["CreateWait"]


class CreateWait:
    """New regular files waiting for their IN_CLOSE_WRITE, oldest first."""

    def __init__(self, wait: float, max_pending: int = 10_000) -> None:
        self.wait, self.max_pending = wait, max_pending
        self._deadline: dict[bytes, float] = {}  # insertion order is creation order

    def __len__(self) -> int:
        return len(self._deadline)

    def __contains__(self, path: object) -> bool:
        return path in self._deadline

    def hold(self, path: bytes, now: float) -> list[bytes]:
        """Hold ``path`` until its close or ``now + wait``; the ones let go to stay bounded."""
        if path in self._deadline:
            return []
        self._deadline[path] = now + self.wait
        out = []
        while len(self._deadline) > self.max_pending:
            oldest = next(iter(self._deadline))
            del self._deadline[oldest]
            out.append(oldest)
        return out

    def release(self, path: bytes) -> bool:
        """``path`` was closed, deleted or is told otherwise: stop holding it. Was it held?"""
        return self._deadline.pop(path, None) is not None

    def expire(self, now: float) -> list[bytes]:
        """The paths whose wait ran out by ``now``, oldest first."""
        out = []
        for path, deadline in self._deadline.items():
            if deadline > now:
                break
            out.append(path)
        for path in out:
            del self._deadline[path]
        return out

    def drain(self) -> list[bytes]:
        """All held paths, oldest first (before an event that may move them)."""
        out = list(self._deadline)
        self._deadline.clear()
        return out

    def next_deadline(self) -> float | None:
        return next(iter(self._deadline.values()), None)
