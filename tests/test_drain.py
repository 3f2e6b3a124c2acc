"""InotifyDrain: a thread empties a real inotify descriptor into a bounded FIFO that
the reactor thread takes in order (the reactor here is a queue of calls we run)."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fs_sync import inotify as ev
from fs_sync.inotify import RawEvent, parse
from mirrord.drain import OVERFLOW, InotifyDrain
from mirrord.kernel import READ_CHUNK, Inotify


class CallQueue:
    """A reactor stand-in: calls from the thread and the next turn's calls, run by the test."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Callable[[], object]] = queue.Queue()

    def callFromThread(self, f: Callable[[], object]) -> None:  # noqa: N802
        self.calls.put(f)

    def callLater(self, delay: float, f: Callable[[], object]) -> None:  # noqa: N802
        assert delay == 0
        self.calls.put(f)

    def run_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            try:
                self.calls.get(timeout=left)()
            except queue.Empty:
                pass


class Collector:
    """The reader side: parses what it is fed (records never split across chunks here)."""

    def __init__(self) -> None:
        self.events: list[RawEvent] = []
        self.chunks: list[int] = []
        self.started = False

    def feed(self, data: bytes) -> None:
        found, tail = parse(data)
        assert tail == b""
        self.events += found
        self.chunks.append(len(data))

    def startReading(self) -> None:  # noqa: N802
        self.started = True


@pytest.fixture
def inotify() -> Iterator[Inotify]:
    ino = Inotify()
    yield ino
    ino.close()


def created(events: list[RawEvent]) -> list[bytes]:
    return [e.name for e in events if e.mask & ev.IN_CLOSE_WRITE]


def test_events_arrive_in_order_a_turn_at_a_time(inotify: Inotify, tmp_path: Path) -> None:
    """Thousands of events, read by the thread, handed over in kernel order, at most
    ``per_turn`` bytes (one read past it) per delivery."""
    inotify.add_watch(os.fsencode(tmp_path))
    reactor, got = CallQueue(), Collector()
    drain = InotifyDrain(inotify, got, reactor, per_turn=4096)
    drain.startReading()
    try:
        names = [f"file-{i:05d}".encode() for i in range(3000)]
        for name in names:
            with open(os.path.join(os.fsencode(tmp_path), name), "wb"):
                pass
        reactor.run_until(lambda: len(created(got.events)) == len(names))
        assert created(got.events) == names
        assert max(got.chunks) <= READ_CHUNK
    finally:
        drain.stopReading()
    assert not drain.reading


def test_full_fifo_stops_reading_and_loses_nothing(inotify: Inotify, tmp_path: Path) -> None:
    """With the FIFO full the thread leaves the rest in the kernel's queue; once the
    reactor takes what it holds, the thread reads on, and every event arrives."""
    inotify.add_watch(os.fsencode(tmp_path))
    reactor, got = CallQueue(), Collector()
    drain = InotifyDrain(inotify, got, reactor, max_bytes=64)
    drain.startReading()
    try:
        names = [f"f{i}".encode() for i in range(500)]
        for name in names:
            with open(os.path.join(os.fsencode(tmp_path), name), "wb"):
                pass
        reactor.run_until(lambda: len(created(got.events)) == len(names))
        assert created(got.events) == names
        # never more than one read past the bound was held at once
        assert drain.peak_bytes <= 64 + READ_CHUNK and len(got.chunks) > 1
    finally:
        drain.stopReading()


class FailingInotify:
    """An inotify stand-in whose descriptor is readable and whose read fails."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.write(self.w, b"!")

    def fileno(self) -> int:
        return self.r

    def read(self, size: int) -> bytes:
        raise RuntimeError("read failed")


def test_a_failing_thread_hands_over_to_the_reactor_and_rescans() -> None:
    """The thread's failure is never silent: an overflow (a rescan) is delivered and the
    reactor's own reader starts."""
    reactor, got = CallQueue(), Collector()
    fake = FailingInotify()
    drain = InotifyDrain(fake, got, reactor)  # type: ignore[arg-type]
    drain.startReading()
    try:
        reactor.run_until(lambda: got.started and got.events != [])
        assert got.events == parse(OVERFLOW)[0]
        assert got.events[0].mask & ev.IN_Q_OVERFLOW
    finally:
        drain.stopReading()
        os.close(fake.r)
        os.close(fake.w)
