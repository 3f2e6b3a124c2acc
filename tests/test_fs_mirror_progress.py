"""The INIT status line: drawn in place on a terminal, throttled, cleared before the summary."""

from __future__ import annotations

import io

from twisted.internet.task import Clock

from fs_mirror.progress import (
    InitProgress,
    Progresses,
    SaidProgress,
    human_bytes,
    init_summary,
    progress_text,
)


def test_human_bytes_picks_a_binary_unit():
    """Sizes are shown with B, KiB, MiB, GiB."""
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"


def test_progress_text_has_counts_and_rates():
    """The status line names records, files, bytes so far and both rates."""
    text = progress_text(2000, 1500, 10 * 1024 * 1024, 4.0)
    assert text == "INIT: 2000 records, 1500 files, 10.0 MiB in 4s (500 records/s, 2.5 MiB/s)"


def test_summary_line_for_the_log():
    """The summary line keeps its 'init finished: N records, F files, B bytes' start."""
    line = init_summary(10, 4, 4096, 2.0)
    assert line.startswith("init finished: 10 records, 4 files, 4096 bytes in 2.0s")
    assert "(5 records/s, 2.0 KiB/s)" in line


def test_redraws_in_place_at_most_every_interval():
    """Updates within the interval are not drawn; counts are relative to the INIT's start."""
    out, clock = io.StringIO(), Clock()
    progress = InitProgress(out, clock, interval=0.5)
    progress.begin((100, 50, 1000))
    progress.update((200, 60, 2024))
    assert out.getvalue() == "\r\x1b[K" + progress_text(100, 10, 1024, 0) + "\r"
    clock.advance(0.2)
    progress.update((300, 70, 3048))
    assert out.getvalue().count("INIT:") == 1
    clock.advance(0.4)
    progress.update((300, 70, 3048))
    assert out.getvalue().count("INIT:") == 2
    assert out.getvalue().endswith(progress_text(200, 20, 2048, 0.6) + "\r")


def test_finish_clears_only_what_was_drawn():
    """finish erases a drawn status line and writes nothing if none was drawn."""
    out, clock = io.StringIO(), Clock()
    progress = InitProgress(out, clock)
    progress.finish()
    assert out.getvalue() == ""
    progress.begin((0, 0, 0))
    progress.update((1, 1, 1))
    progress.finish()
    assert out.getvalue().endswith("\r\r\x1b[K")


def test_said_progress_speaks_once_per_interval_from_the_inits_start():
    """In a log or to systemd, the progress text is said at most every ``interval``
    seconds, the first time one interval after the INIT began; counts are the INIT's own."""
    said: list[str] = []
    clock = Clock()
    progress = SaidProgress(said.append, clock, interval=5.0)
    progress.begin((100, 10, 1000))
    clock.advance(4)
    progress.update((200, 10, 1000))
    assert said == []  # a short INIT says nothing but its summary
    clock.advance(1)
    progress.update((300, 20, 3000))
    clock.advance(1)
    progress.update((400, 20, 3000))
    assert said == [progress_text(200, 10, 2000, 5.0)]
    clock.advance(4)
    progress.update((500, 30, 5000))
    assert said[1:] == [progress_text(400, 20, 4000, 10.0)]


def test_progresses_hand_each_call_to_every_part():
    """One INIT, several reports: each sees begin, every update and finish."""
    a: list[str] = []
    b: list[str] = []
    clock = Clock()
    both = Progresses([SaidProgress(a.append, clock, 1.0), SaidProgress(b.append, clock, 1.0)])
    both.begin((0, 0, 0))
    clock.advance(1)
    both.update((5, 1, 10))
    both.finish()
    assert a == b == [progress_text(5, 1, 10, 1.0)]
