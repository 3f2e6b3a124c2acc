"""Pure handling of the inotify event stream: byte parsing and move pairing.

The kernel hands us a byte stream of ``struct inotify_event`` records; a read
may in principle end inside a record (our callers also feed arbitrary
chunks in tests), so :func:`parse` returns the events it could decode and the
undecoded tail.  A rename shows up as two events, ``IN_MOVED_FROM`` and
``IN_MOVED_TO``, linked by a cookie; the second one may never come (the
target is outside every watched directory), so :class:`MovePairer` waits a
bounded time and a bounded number of entries for it.  Nothing here does I/O
or reads a clock: time is passed in, so every case is testable exactly.

The mask bits are the Linux ABI values from ``<sys/inotify.h>`` (a test
checks that they equal pyinotify's), kept here so this module imports nothing.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the NUL-padded name)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One kernel event; ``name`` is relative to the watch, without NUL padding."""

    wd: int
    mask: int
    cookie: int
    name: bytes

    @property
    def isdir(self) -> bool:
        return bool(self.mask & IN_ISDIR)


def parse(buf: bytes) -> tuple[list[RawEvent], bytes]:
    """Decode every complete record in ``buf``; return them and the undecoded tail."""
    events: list[RawEvent] = []
    size = HEADER.size
    end = len(buf)
    offset = 0
    unpack_from = HEADER.unpack_from
    while end - offset >= size:
        wd, mask, cookie, length = unpack_from(buf, offset)
        stop = offset + size + length
        if stop > end:
            break
        name = bytes(buf[offset + size : stop]).split(b"\0", 1)[0]
        events.append(RawEvent(wd, mask, cookie, name))
        offset = stop
    return events, bytes(buf[offset:])


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
