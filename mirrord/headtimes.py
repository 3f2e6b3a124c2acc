"""When the log grew past which serial: a client's lag in seconds, in bounded memory.

The wmLog keeps records, not times, and a client's lag in records says
nothing about how stale its mirror is.  The journal tells ``HeadTimes``
the head after each commit that moved it; entries closer together than
``resolution`` seconds merge into one, and only the newest ``size``
entries are kept, so the cost is O(1) per commit and bounded memory
whatever the rate.  ``logged_at(serial)`` is then the time the record with
that serial was logged, at most ``resolution`` early; for a serial older
than what is kept it is the oldest time kept, so a lag computed from it is
a lower bound, never an invented number.  Pure: no clock of its own.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["HeadTimes"]


class HeadTimes:
    """``(first serial, time)`` windows, oldest first, at most ``size`` of them."""

    def __init__(self, head: int, now: float, *, resolution: float = 1.0, size: int = 4096) -> None:
        self.resolution, self.size = resolution, size
        # Everything up to ``head`` was logged by ``now`` (the start): one window.
        self._first: list[int] = [0]
        self._time: list[float] = [now]
        self._head = head

    def __len__(self) -> int:
        return len(self._first)

    def grew(self, head: int, now: float) -> None:
        """The head is now ``head`` (called after a commit); O(1) amortised."""
        if head <= self._head:
            return
        first = self._head + 1
        self._head = head
        if now - self._time[-1] < self.resolution:
            return  # the newest window covers these serials too
        self._first.append(first)
        self._time.append(now)
        if len(self._first) > 2 * self.size:  # trim in bulk: amortised O(1)
            del self._first[: -self.size]
            del self._time[: -self.size]

    def logged_at(self, serial: int) -> float:
        """When the record ``serial`` was logged (see the module's note on precision)."""
        i = bisect_right(self._first, serial) - 1
        return self._time[max(i, 0)]

    def lag_seconds(self, serial: int, head: int, now: float) -> float:
        """How long a client at ``serial`` has lacked the oldest record it has not got."""
        if serial >= head:
            return 0.0
        return max(now - self.logged_at(serial + 1), 0.0)
