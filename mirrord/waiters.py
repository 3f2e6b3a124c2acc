"""NEXT requests parked until the log grows past the serial each client has.

A client that has everything sends NEXT and waits; the server parks it here
(through ``Journal.wait_after``) and the journal wakes every waiter whose
serial the head has passed after each commit. A parked client that goes
away cancels its Deferred, which takes it off the list, so waiters never
outlive their connections.
"""

from __future__ import annotations

from twisted.internet import defer

__all__ = ["Waiters"]


class Waiters:
    """(serial, Deferred) pairs, fired with the head once it is above the serial."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, defer.Deferred[int]]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def wait_after(self, serial: int, head: int) -> defer.Deferred[int]:
        """Fires with the head once it is above ``serial``; cancel to stop waiting."""
        if head > serial:
            return defer.succeed(head)

        def cancel(d: defer.Deferred[int]) -> None:
            try:
                self._waiting.remove((serial, d))
            except ValueError:
                pass

        d: defer.Deferred[int] = defer.Deferred(cancel)
        self._waiting.append((serial, d))
        return d

    def wake(self, head: int) -> None:
        """Fire every waiter whose serial ``head`` has passed."""
        ready = [w for w in self._waiting if w[0] < head]
        if ready:
            self._waiting = [w for w in self._waiting if w[0] >= head]
            for _, d in ready:
                d.callback(head)
