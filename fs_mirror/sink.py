"""Where a batch of records goes: the mirror (``Applier``) or a report.

The client only needs ``apply_batch`` and the counters; report mode's sink
prints every record (the INIT baseline too) and changes nothing on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred, succeed

from fs_mirror.nodes import Stats
from fs_mirror.report import Reporter
from protocol.records import Record


class Sink(Protocol):
    """Where records go: an ``Applier`` (mirror) or a reporter (report mode)."""

    mirrors: bool  # True when records change the tree under the datadir
    stats: Stats  # running counters

    def apply_batch(
        self,
        records: list[Record],
        serial: int | None = None,
        *,
        init: bool = False,
        replayed: int = 0,
        local_done: Callable[[], None] | None = None,
    ) -> Deferred: ...

    def checkpoint(self) -> None:
        """Make what the next saved serial relies on durable (called just before it)."""

    def needs_resync(self) -> bool:
        """True when only a full INIT can bring the mirror in step again."""

    def resynced(self) -> None:
        """A full INIT begins: it names everything again."""


class ReportSink:
    """Report mode: every record (the INIT baseline too) is printed, nothing applied."""

    mirrors = False

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.stats = Stats()

    def apply_batch(
        self,
        records: list[Record],
        serial: int | None = None,
        *,
        init: bool = False,
        replayed: int = 0,
        local_done: Callable[[], None] | None = None,
    ) -> Deferred[Stats]:
        for record in records[replayed:]:  # what a killed run reported is not reported again
            self.stats.records += 1
            self.reporter.report(record, serial)
        return succeed(self.stats)

    def checkpoint(self) -> None:
        pass

    def needs_resync(self) -> bool:
        return False

    def resynced(self) -> None:
        pass
