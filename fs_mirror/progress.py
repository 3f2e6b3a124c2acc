"""INIT progress, for a person at a terminal, a log and systemd.

A full sync of millions of files takes long; on a terminal fs_mirror keeps
one status line up to date (records, files and bytes so far, and the rates),
redrawn in place at most every ``interval`` seconds.  In a log (not a tty)
the same text is a log line every ``progress.interval`` seconds
(:class:`SaidProgress`), and systemd gets it as ``STATUS=`` at that rate too;
:class:`Progresses` hands one INIT's updates to several of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Protocol


class Clock(Protocol):
    def seconds(self) -> float: ...


def human_bytes(n: float) -> str:
    """``n`` bytes with a binary unit: ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def progress_text(records: int, files: int, size: int, elapsed: float) -> str:
    """The status line for counts reached after ``elapsed`` seconds."""
    secs = max(elapsed, 1e-6)
    return (
        f"INIT: {records} records, {files} files, {human_bytes(size)}"
        f" in {elapsed:.0f}s ({records / secs:.0f} records/s, {human_bytes(size / secs)}/s)"
    )


def init_summary(records: int, files: int, size: int, elapsed: float) -> str:
    """The one line a log gets when INIT is done."""
    secs = max(elapsed, 1e-6)
    return (
        f"init finished: {records} records, {files} files, {size} bytes in {secs:.1f}s"
        f" ({records / secs:.0f} records/s, {human_bytes(size / secs)}/s)"
    )


class InitProgress:
    """Redraws one status line on ``out`` (a terminal) during INIT."""

    def __init__(self, out: IO[str], clock: Clock, interval: float = 0.5) -> None:
        self.out, self.clock, self.interval = out, clock, interval
        self._began = 0.0
        self._base = (0, 0, 0)
        self._last = float("-inf")
        self._drawn = False

    def begin(self, counts: tuple[int, int, int]) -> None:
        """An INIT starts; ``counts`` are the sink's counters now."""
        self._began = self.clock.seconds()
        self._base = counts
        self._last = float("-inf")

    def update(self, counts: tuple[int, int, int], *, force: bool = False) -> None:
        """Redraw if ``interval`` has passed since the last drawing (or ``force``)."""
        now = self.clock.seconds()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        records, files, size = (c - b for c, b in zip(counts, self._base, strict=True))
        # \r and erase-line redraw in place; the trailing \r lets a log line overwrite it.
        self.out.write(f"\r\x1b[K{progress_text(records, files, size, now - self._began)}\r")
        self.out.flush()
        self._drawn = True

    def finish(self) -> None:
        """Clear the status line before the summary is logged."""
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = False


class NoProgress(InitProgress):
    """No terminal: draw nothing (the summary line is logged anyway)."""

    def __init__(self) -> None:
        pass

    def begin(self, counts: tuple[int, int, int]) -> None:
        pass

    def update(self, counts: tuple[int, int, int], *, force: bool = False) -> None:
        pass

    def finish(self) -> None:
        pass


class SaidProgress(InitProgress):
    """Hands the progress text to ``say`` (a log line, a ``STATUS=``) at most every ``interval``.

    The first update is said only once ``interval`` has passed since the
    INIT began: a short INIT says nothing but its summary.
    """

    def __init__(self, say: Callable[[str], None], clock: Clock, interval: float) -> None:
        self.say, self.clock, self.interval = say, clock, interval
        self._began = 0.0
        self._base = (0, 0, 0)
        self._last = 0.0

    def begin(self, counts: tuple[int, int, int]) -> None:
        self._began = self._last = self.clock.seconds()
        self._base = counts

    def update(self, counts: tuple[int, int, int], *, force: bool = False) -> None:
        now = self.clock.seconds()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        records, files, size = (c - b for c, b in zip(counts, self._base, strict=True))
        self.say(progress_text(records, files, size, now - self._began))

    def finish(self) -> None:
        pass


class Progresses(InitProgress):
    """Several progress reports of one INIT (terminal, log, systemd)."""

    def __init__(self, parts: Sequence[InitProgress]) -> None:
        self.parts = list(parts)

    def begin(self, counts: tuple[int, int, int]) -> None:
        for part in self.parts:
            part.begin(counts)

    def update(self, counts: tuple[int, int, int], *, force: bool = False) -> None:
        for part in self.parts:
            part.update(counts, force=force)

    def finish(self) -> None:
        for part in self.parts:
            part.finish()
