"""Pure pairing of the two halves of a rename in the inotify event stream.

The records themselves are decoded by ``fs_sync.inotify.parse``, the seam
mirrord shares with the rsync backend.  A rename shows up as two events,
``IN_MOVED_FROM`` and ``IN_MOVED_TO``, linked by a cookie; the second one
may never come (the target is outside every watched directory), so
:class:`MovePairer` waits a bounded time and a bounded number of entries for
it.  Nothing here does I/O or reads a clock: time is passed in, so every
case is testable exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from fs_sync.inotify import IN_MOVED_FROM, IN_MOVED_TO


class MoveHalf(Protocol):
    """What the pairer needs of an event: its cookie and whether it is the FROM half."""

    @property
    def cookie(self) -> int: ...

    @property
    def mask(self) -> int: ...


H = TypeVar("H", bound=MoveHalf)


@dataclass(frozen=True, slots=True)
class Paired(Generic[H]):
    """A rename seen whole: ``src`` is the IN_MOVED_FROM half, ``dst`` the IN_MOVED_TO."""

    src: H
    dst: H


@dataclass(frozen=True, slots=True)
class UnpairedFrom(Generic[H]):
    """Moved out of sight (or the partner never came): the caller treats it as a delete."""

    event: H


@dataclass(frozen=True, slots=True)
class UnpairedTo(Generic[H]):
    """Moved in from somewhere unwatched: the caller treats it as a create."""

    event: H


MoveOutcome = Paired[H] | UnpairedFrom[H] | UnpairedTo[H]


class MovePairer(Generic[H]):
    """Pair IN_MOVED_FROM with IN_MOVED_TO by cookie, waiting at most ``wait`` seconds.

    Feed move halves in stream order with the current time.  A FROM half is
    held until its TO half arrives (-> :class:`Paired`), until
    :meth:`expire` is called at or after its deadline, or until more than
    ``max_pending`` halves are held (the oldest goes first): either way it
    comes out as :class:`UnpairedFrom`.  A TO half with no held partner comes
    out as :class:`UnpairedTo` at once.  A late partner still pairs as long
    as the FROM half has not been expired: correctness does not depend on
    how promptly the caller's timer runs.
    """

    def __init__(self, wait: float, max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.wait = wait
        self.max_pending = max_pending
        self._pending: OrderedDict[int, tuple[H, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def feed(self, half: H, now: float) -> list[MoveOutcome[H]]:
        """Take one IN_MOVED_FROM or IN_MOVED_TO half; return what it resolves."""
        if half.mask & IN_MOVED_FROM:
            out: list[MoveOutcome[H]] = []
            old = self._pending.pop(half.cookie, None)
            if old is not None:  # a reused cookie: the earlier rename lost its partner
                out.append(UnpairedFrom(old[0]))
            self._pending[half.cookie] = (half, now + self.wait)
            while len(self._pending) > self.max_pending:
                out.append(UnpairedFrom(self._pending.popitem(last=False)[1][0]))
            return out
        if half.mask & IN_MOVED_TO:
            held = self._pending.pop(half.cookie, None)
            if held is None:
                return [UnpairedTo(half)]
            return [Paired(held[0], half)]
        raise ValueError(f"not a move event: mask {half.mask:#x}")

    def update_held(self, change: Callable[[H], H]) -> None:
        """Replace each held FROM half by ``change(half)``, keeping its deadline and order.

        For a caller whose halves carry paths: a directory renamed above a half
        that is still waiting moves the path that half must be reported at.
        O(held): held halves are only the renames of the last ``wait`` seconds
        whose partner has not come (moves out of the watched trees).
        """
        pending = self._pending
        for cookie, (half, deadline) in list(pending.items()):
            new = change(half)
            if new is not half:
                pending[cookie] = (new, deadline)

    def expire(self, now: float) -> list[UnpairedFrom[H]]:
        """Give up on every FROM half whose deadline is at or before ``now``."""
        out: list[UnpairedFrom[H]] = []
        pending = self._pending
        while pending:
            cookie, (half, deadline) = next(iter(pending.items()))
            if deadline > now:
                break
            del pending[cookie]
            out.append(UnpairedFrom(half))
        return out

    def next_deadline(self) -> float | None:
        """When the oldest held FROM half expires, or None when nothing is held."""
        if not self._pending:
            return None
        return next(iter(self._pending.values()))[1]
