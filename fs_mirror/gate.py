"""Between batches: the one moment a backup of the mirror may be taken.

Inside fs_mirror, batches and the daily rotation share a ``DeferredLock``.
``fs_mirror --rotate`` from cron is another process, so the same exclusion is
also an ``fcntl`` lock on ``DATADIR/.fs_mirror.d/batch.lock``: the daemon
holds it while it applies a batch and saves its serial, and ``--rotate``
holds it while it copies.  The daemon never blocks its reactor on it: it
polls, and says once that it waits for a rotation.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from fs_mirror.state import STAGING_NAME

BATCH_LOCK_NAME = b"batch.lock"
POLL = 0.1  # seconds between attempts while a rotation holds the lock


def batch_lock_path(datadir: bytes | str) -> bytes:
    return os.path.join(os.fsencode(datadir), STAGING_NAME, BATCH_LOCK_NAME)


class BatchLock:
    """The cross-process lock; one descriptor kept open (fcntl locks die with any close)."""

    def __init__(self, datadir: bytes | str) -> None:
        path = batch_lock_path(datadir)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def acquire(self) -> None:
        """Wait for the lock (a separate process: ``--rotate``)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


class FileGate(DeferredLock):
    """A ``DeferredLock`` that also holds ``BatchLock`` while it is held."""

    def __init__(self, lock: BatchLock, reactor: Any, log: Logger | None = None) -> None:
        super().__init__()
        self.file, self.reactor, self.log = lock, reactor, log or Logger()

    def acquire(self) -> Deferred:
        d = super().acquire()
        d.addCallback(self._take_file)
        return d

    def _take_file(self, result: object) -> object:
        if self.file.try_acquire():
            return result
        self.log.info("waiting for a rotation of this mirror (fs_mirror --rotate) to finish")
        waiting: Deferred = Deferred()

        def poll() -> None:
            if self.file.try_acquire():
                waiting.callback(result)
            else:
                self.reactor.callLater(POLL, poll)

        self.reactor.callLater(POLL, poll)
        return waiting

    def release(self) -> None:
        self.file.release()
        super().release()
