"""``DATADIR/.fs_mirror.d/status.json``: the running fs_mirror's state, for ``--status``.

Written whole (``cmdconfig.atomic.replace_file``: a reader never sees half
a file) at a bounded rate: a change is written in the reactor's next turn when
the last write is at least ``every`` seconds old, else once when that much
time has passed,
so a burst of tiny batches costs at most ``1/every`` writes a second,
however many records it holds.  Not fsynced: it is for people and scripts,
and a power loss leaves the old or the new one.  Stopping writes it once
more with ``running: false``, so ``--status`` says how the last one ended.
"""

from __future__ import annotations

import datetime
import errno
import os
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from cmdconfig.atomic import replace_file
from fs_mirror.health import Status, StatusUnreadable
from fs_mirror.state import STAGING_NAME

__all__ = [
    "STATUS_NAME",
    "StatusFile",
    "StatusUnreadable",
    "alive",
    "format_status",
    "read_status",
    "state_of",
    "status_path",
]

STATUS_NAME = b"status.json"  # in fs_mirror's staging directory
EVERY = 0.5  # seconds: at most two writes a second

log = Logger(namespace="fs_mirror")


def status_path(datadir: bytes | str) -> bytes:
    return os.path.join(os.fsencode(datadir), STAGING_NAME, STATUS_NAME)


class StatusFile:
    """Writes ``snapshot()`` to ``path`` when told of a change, at most once per ``every`` s."""

    def __init__(
        self, path: bytes, snapshot: Callable[[], Status], reactor: Any, every: float = EVERY
    ) -> None:
        self.path, self.snapshot, self.reactor, self.every = path, snapshot, reactor, every
        self.writes = 0
        self._last = float("-inf")
        self._call: Any = None  # the delayed write, when one is due
        self._failing = False

    def changed(self) -> None:
        """Something in the status changed: write in the reactor's next turn, or once
        ``every`` has passed since the last write.  Never inline: the change being
        told of (a batch received) must not wait for a file to be replaced."""
        if self._call is not None:
            return
        wait = self._last + self.every - self.reactor.seconds()
        self._call = self.reactor.callLater(max(wait, 0.0), self._due)

    def _due(self) -> None:
        self._call = None
        self._write(self.snapshot())

    def final(self, status: Status) -> None:
        """The last write (stopping): now, whatever the rate."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._write(status)

    def _write(self, status: Status) -> None:
        self._last = self.reactor.seconds()
        try:
            replace_file(self.path, status.to_json(), 0o600, durable=False)
        except OSError as e:  # a full disk must not stop the mirror; said once
            if not self._failing:
                log.warn("cannot write {path}: {why}", path=os.fsdecode(self.path), why=e.strerror)
            self._failing = True
            return
        self._failing = False
        self.writes += 1


def read_status(datadir: bytes | str) -> Status | None:
    """The status the last fs_mirror on ``datadir`` wrote; None when none ever ran there.

    Raises ``StatusUnreadable`` (a file that is not a status) or ``OSError``.
    """
    try:
        with open(status_path(datadir), "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    return Status.from_json(data)


def alive(pid: int) -> bool:
    """Is process ``pid`` still there (one we may not signal counts as there)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    stamp = datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    return f"{stamp} ({max(now - t, 0):.0f}s ago)"


def state_of(status: Status) -> str:
    """running, or how the last one ended: stopped, or gone without stopping (killed)."""
    if status.running and alive(status.pid):
        return "running" + ("" if status.connected else ", not connected to mirrord")
    return "stopped" if not status.running else "not running (ended without a clean stop)"


def format_status(status: Status, now: float) -> str:
    """``fs_mirror --status`` for people."""
    unknown = "unknown (a full sync is in progress, or no serial heard)"
    lines = [
        f"state:        {state_of(status)} (pid {status.pid})",
        f"session:      {status.session or 'none yet'}",
        f"serial:       {'none yet' if status.serial is None else status.serial}",
        f"mirrord head: {'unknown' if status.head is None else status.head} (as last named)",
        f"lag:          {unknown if status.lag is None else f'{status.lag} records'}",
        f"applied:      {status.records_applied} records, {status.files_fetched} files"
        f" ({status.bytes_fetched} bytes) fetched since start",
        f"skipped:      {status.skipped} records refused or skipped",
        f"errors:       {status.errors}",
        f"last error:   {status.last_error or 'none'}"
        + (f" at {_when(status.last_error_at, now)}" if status.last_error else ""),
        f"last batch:   {_when(status.last_batch, now)}",
        f"updated:      {_when(status.updated, now)}",
    ]
    return "\n".join(lines)
