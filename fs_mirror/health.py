"""Where a running fs_mirror stands, for ``fs_mirror --status`` and ``/metrics``.

``Health`` is told a few facts as they happen, each in O(1): the serial
mirrord last named (``SERIAL:`` of an INIT or a batch, or the serial an SN
resumed at: the head as far as this client can know it without changing the
wire protocol), the serial applied and saved, each error.  The counts of
records, files, bytes and skipped records are the sink's own ``Stats``,
read when a ``Status`` is taken, never copied.  A ``Status`` is a frozen
value, written to the datadir as JSON by ``fs_mirror.statusfile`` and read
back by ``fs_mirror --status`` when this process is long gone.

``lag`` is that last named serial minus the applied one (same session), so
it counts what is in hand and not yet applied; it is ``None`` (unknown)
during a full sync into a mirror of another session, and may understate
how far mirrord's head is once a batch is full (mirrord sends at most
``batch`` records per NEXT without saying how many more it holds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from fs_mirror.nodes import Stats

__all__ = ["Health", "Status", "StatusUnreadable"]

MAX_ERROR = 500  # characters of the last error kept (a path can be long)


class StatusUnreadable(ValueError):
    """A status file that does not hold a status this version can read."""


@dataclass(frozen=True)
class Status:
    """One fs_mirror's state at ``updated`` (times are epoch seconds)."""

    pid: int
    running: bool
    started: float
    updated: float
    connected: bool
    session: str | None
    serial: int | None
    head: int | None
    lag: int | None
    records_applied: int
    files_fetched: int
    bytes_fetched: int
    skipped: int
    errors: int
    last_error: str | None
    last_error_at: float | None
    last_batch: float | None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Status:
        try:
            value = json.loads(data)
        except ValueError as e:
            raise StatusUnreadable(f"not JSON ({e})") from None
        names = {f.name for f in fields(cls)}
        if not isinstance(value, dict) or not names <= set(value):
            raise StatusUnreadable("not an fs_mirror status")
        return cls(**{name: value[name] for name in names})


class Health:
    """The facts of a running fs_mirror that the sink's Stats do not hold."""

    def __init__(
        self,
        stats: Stats,
        clock: Callable[[], float],
        saved: tuple[str, int] | None = None,
        *,
        changed: Callable[[], None] | None = None,
    ) -> None:
        self.stats, self.clock = stats, clock
        self.changed = changed or (lambda: None)  # told after each fact (the status file)
        self.started = clock()
        self.applied: tuple[str, int] | None = saved
        self.named: tuple[str, int] | None = saved  # mirrord's head as last named to us
        self.connected = False
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_batch: float | None = None

    def link(self, up: bool) -> None:
        """The connection to mirrord came up (in step) or went down."""
        if up != self.connected:
            self.connected = up
            self.changed()

    def heard(self, session: str, serial: int) -> None:
        """mirrord named ``serial`` (INIT, batch or resume): its head is at least that."""
        if self.named is None or self.named[0] != session or serial > self.named[1]:
            self.named = (session, serial)
            self.changed()

    def saved(self, session: str, serial: int) -> None:
        """A batch (or an INIT) is applied and its serial saved."""
        self.applied = (session, serial)
        self.last_batch = self.clock()
        self.heard(session, serial)
        self.changed()

    def failed(self, message: str) -> None:
        """Something went wrong that the log says; counted, the newest one kept."""
        self.errors += 1
        self.last_error = message[:MAX_ERROR]
        self.last_error_at = self.clock()
        self.changed()

    @property
    def lag(self) -> int | None:
        if self.named is None or self.applied is None or self.named[0] != self.applied[0]:
            return None
        return max(self.named[1] - self.applied[1], 0)

    def status(self, *, running: bool = True) -> Status:
        applied, named, stats = self.applied, self.named, self.stats
        return Status(
            pid=os.getpid(),
            running=running,
            started=self.started,
            updated=self.clock(),
            connected=self.connected and running,
            session=applied[0] if applied else None,
            serial=applied[1] if applied else None,
            head=named[1] if named else None,
            lag=self.lag,
            records_applied=stats.records,
            files_fetched=stats.files,
            bytes_fetched=stats.bytes,
            skipped=stats.skipped + stats.refused,
            errors=self.errors,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            last_batch=self.last_batch,
        )


def jsonable(status: Status) -> dict[str, Any]:
    """The status as ``fs_mirror --status --json`` prints it."""
    return asdict(status)
