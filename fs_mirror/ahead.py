"""NEXT batches read while a chunk is applied, applied together after it.

A burst of changes reaches fs_mirror as a run of full NEXT batches. Applied
one by one, each pays the whole of a fetch's fixed cost (an rsync run trades
file lists and closing messages, ~0.1 s) and the server's round trip while
nothing else happens. So once a batch is received, NEXT goes out at once,
and what arrives while its chunk is applied and fetched is held here; when
that chunk is done, everything held goes to the sink as one chunk, so a
burst is fetched in a few large runs. A single change never waits: with no
chunk in hand its batch is applied the moment it is complete.

The records held are consecutive serials, so one chunk of them replays
exactly as the batches would one after the other (``fs_mirror.apply``'s
rules are per chunk, whatever its size). The serial saved after a chunk is
the last batch end it holds: a chunk cut at ``limit`` inside a batch saves
no serial of that batch (the rest of the batch does), only one before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.records import Record

__all__ = ["Chunk", "Held"]


@dataclass(frozen=True)
class Chunk:
    """Records to apply as one, from serial ``first``; ``saves``: the serial to save after."""

    records: list[Record]
    first: int | None
    serial: int | None  # the serial the records lead towards (the sink's ``serial``)
    saves: int | None  # the batch end reached once applied; None if cut inside a batch


class Held:
    """Received records not yet handed to the sink, at most about ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._records: list[Record] = []
        self._first: int | None = None
        self._serial: int | None = None
        self._saves: int | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __bool__(self) -> bool:
        """Something to apply or a serial to save."""
        return bool(self._records) or self._saves is not None

    def full(self) -> bool:
        return len(self._records) >= self.limit

    def add(self, records: list[Record], first: int | None, serial: int | None, ends: bool) -> None:
        """Hold ``records`` (from serial ``first``) after those held; ``ends``: a batch ends
        with them, at ``serial`` (else the last batch end held stays the one to save)."""
        if records:
            if not self._records:
                self._first = first
            self._records.extend(records)
        self._serial = serial
        if ends:
            self._saves = serial

    def take(self) -> Chunk:
        """Everything held, as one chunk; afterwards nothing is held."""
        chunk = Chunk(self._records, self._first, self._serial, self._saves)
        self.clear()
        return chunk

    def clear(self) -> None:
        self._records, self._first, self._serial, self._saves = [], None, None, None
