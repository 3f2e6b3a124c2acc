"""The shapes mirrord's parts meet at, as ``Protocol``s rather than untyped values.

Each part is handed what it needs by the service tree (or by a test): the
identity it mirrors, a view of the snapshot, a clock. Naming the few methods
each one calls lets mypy check both sides, lets tests pass small fakes
(``task.Clock``, a plain ``Identity``) without ``mock``, and says at a glance
how little one part knows of another. Nothing here runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mirrord.values import Entry

__all__ = [
    "Clock",
    "DelayedCall",
    "Identity",
    "Membership",
    "Report",
    "SnapshotReader",
    "Watch",
]

#: ``watch(dir)`` before a directory is listed; False: it is polled instead
Watch = Callable[[bytes], bool]
#: ``report(path, error)``: a path that could not be read or stat-ed
Report = Callable[[bytes, OSError], None]


class Membership(Protocol):
    """Is a path mirrored (included, not excluded)?"""

    def __contains__(self, path: object, /) -> bool: ...


class Identity(Membership, Protocol):
    """The mirrored trees: membership and the include roots (``fs_info``'s
    ``Identity``/``IdentitySet``, or the service's live view of them)."""

    def roots(self) -> Sequence[bytes]: ...


class SnapshotReader(Protocol):
    """The snapshot reads a scan needs (a ``Store``, inside or outside a transaction)."""

    def get(self, path: bytes) -> Entry | None: ...

    def children_chunk(
        self, dir_path: bytes, after: bytes | None = None, limit: int = ...
    ) -> list[tuple[bytes, Entry]]: ...


class DelayedCall(Protocol):
    """What we do with a call scheduled on the clock (Twisted's ``IDelayedCall``)."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...

    def reset(self, seconds_from_now: float, /) -> None: ...

    def getTime(self) -> float: ...  # noqa: N802 - Twisted's name


class Clock(Protocol):
    """The reactor as a clock: the time and delayed calls (``IReactorTime``)."""

    def seconds(self) -> float: ...

    def callLater(  # noqa: N802 - Twisted's name
        self, delay: float, callable: Callable[..., object], /, *args: object
    ) -> DelayedCall: ...
