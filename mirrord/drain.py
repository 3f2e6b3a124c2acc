"""Empty the kernel's inotify queue as fast as it fills, whatever the reactor is doing.

The kernel queues at most ``max_queued_events`` (16,384 by default) and
then drops events and says only ``IN_Q_OVERFLOW``: a full rescan. A writer
touching 150,000 files a second fills that queue in about 50 ms, less than
one busy reactor turn (a large commit, a walk slice, an INIT being served),
so a reader that runs only between turns overflows under any real storm.

:class:`InotifyDrain` reads the descriptor in a thread of its own, which
does nothing else: it blocks in ``poll`` and copies what the kernel has into
a FIFO of raw chunks bounded by ``max_bytes`` (16 MiB: some 500,000 events,
thirty times the kernel's default queue). The reactor thread takes the
chunks in order, at most ``per_turn`` bytes per turn so clients are still
served during a storm, and hands them to :meth:`InotifyReader.feed`
(parsing, the partial-record tail and the handler's errors stay there).
When the FIFO is full the thread stops reading: the kernel's queue fills
behind it and overflows as it would have, so the bound never loses an event
silently. ``os.read`` and ``poll`` release the GIL; the thread holds it
only to append a chunk.
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

from fs_sync.inotify import HEADER, IN_Q_OVERFLOW
from mirrord.kernel import READ_CHUNK, Inotify

__all__ = ["InotifyDrain", "MAX_BYTES", "PER_TURN"]

MAX_BYTES = 16 * 1024 * 1024
PER_TURN = 256 * 1024
JOIN_TIMEOUT = 10.0
OVERFLOW = HEADER.pack(-1, IN_Q_OVERFLOW, 0, 0)  # what the kernel says when it drops


class Feed(Protocol):
    """Where the chunks go, on the reactor thread (an :class:`InotifyReader`), and
    who reads in the drain's place if its thread fails."""

    def feed(self, data: bytes) -> None: ...

    def startReading(self) -> None: ...  # noqa: N802 - Twisted's name


class ThreadReactor(Protocol):
    """The reactor as the drain uses it: a call from the thread, and the next turn."""

    def callFromThread(self, f: Callable[[], object], /) -> None: ...  # noqa: N802

    def callLater(self, delay: float, f: Callable[[], object], /) -> object: ...  # noqa: N802


class InotifyDrain:
    """A thread reading ``inotify`` into a bounded FIFO, delivered on the reactor."""

    log = Logger()

    def __init__(
        self,
        inotify: Inotify,
        reader: Feed,
        reactor: ThreadReactor,
        max_bytes: int = MAX_BYTES,
        per_turn: int = PER_TURN,
        log: Logger | None = None,
    ) -> None:
        if log is not None:
            self.log = log
        self.inotify, self.reader, self.reactor = inotify, reader, reactor
        self.max_bytes, self.per_turn = max_bytes, per_turn
        self._chunks: deque[bytes] = deque()
        self._bytes = 0  # in _chunks
        self._peak = 0  # the most bytes ever waiting, for -k status and the benches
        self._lock = threading.Condition()
        self._delivering = False  # a delivery is scheduled on the reactor
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None

    @property
    def reading(self) -> bool:
        return self._thread is not None

    @property
    def peak_bytes(self) -> int:
        return self._peak

    def startReading(self) -> None:  # noqa: N802 - as InotifyReader's
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="inotify-drain", daemon=True)
            self._thread.start()

    def stopReading(self) -> None:  # noqa: N802
        """Stop the thread (before the descriptor is closed); what it holds is dropped:
        the next boot rescans."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                self.log.error("inotify: the reading thread did not stop")
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        self._chunks.clear()
        self._bytes = 0

    # -- the thread ----------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.inotify.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping:
                with self._lock:
                    while self._bytes >= self.max_bytes and not self._stopping:
                        self._lock.wait()  # full: let the kernel's queue hold the rest
                if self._stopping:
                    return
                poller.poll()
                if self._stopping:
                    return
                data = self.inotify.read(READ_CHUNK)
                if data:
                    self._push(data)
        except Exception:
            # never silent: the reactor reads from now on, and rescans for what was lost
            self.log.failure("inotify: the reading thread failed; reading on the reactor")
            try:
                self._push(OVERFLOW)
                self.reactor.callFromThread(self.reader.startReading)
            except Exception:
                self.log.failure("inotify: handing over to the reactor failed")

    def _push(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)
            self._bytes += len(data)
            self._peak = max(self._peak, self._bytes)
            if self._delivering:
                return
            self._delivering = True
        self.reactor.callFromThread(self._deliver)

    # -- the reactor thread --------------------------------------------------------
    def _deliver(self) -> None:
        taken = 0
        while taken < self.per_turn:
            with self._lock:
                if not self._chunks:
                    self._delivering = False
                    return
                data = self._chunks.popleft()
                self._bytes -= len(data)
                self._lock.notify_all()
            if self._stopping:
                return
            taken += len(data)
            self.reader.feed(data)
        self.reactor.callLater(0, self._deliver)  # more waiting: let this turn be written
