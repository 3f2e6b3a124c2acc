"""Report mode's sink: baseline, per-record serials and full-sync differences (real BDB)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from fs_mirror.baseline import Baseline
from fs_mirror.report import Reporter
from fs_mirror.sink import ReportSink
from protocol.records import Action, Meta, Record

DIR = Meta(mode=0o755, uid=0, gid=0, mtime_ns=0)
TREE = [
    Record(Action.CREATE, b"/w", meta=DIR),
    Record(Action.CREATE, b"/w/a", meta=DIR),
    Record(Action.FWRITE, b"/w/a/x", meta=Meta(size=1)),
    Record(Action.FWRITE, b"/w/a/y", meta=Meta(size=1)),
    Record(Action.FWRITE, b"/w/z", meta=Meta(size=1)),
]


class Harness:
    def __init__(self, home: Path) -> None:
        self.out = io.StringIO()
        self.clock = Clock()
        reporter = Reporter(self.out, clock=self.clock)
        self.sink = ReportSink(reporter, Baseline(bytes(home)), self.clock)

    def full_sync(self, records: list[Record], serial: int) -> None:
        self.sink.resynced()
        self.sink.apply_batch(records, serial, init=True)
        done = self.sink.finish_init()
        while not done.called:
            self.clock.advance(0)
        self.sink.checkpoint()

    def lines(self) -> list[str]:
        lines = self.out.getvalue().splitlines()
        self.out.seek(0)
        self.out.truncate()
        return [line.split(" ", 1)[1] for line in lines]  # without the time


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path / "bl")
    yield harness
    harness.sink.close()


def test_records_get_their_own_serials(h: Harness) -> None:
    """Each record of a chunk is reported with its serial, counting from ``first``."""
    h.full_sync(TREE, 10)
    assert h.lines() == ["baseline: 5 entries recorded at serial 10; later changes are reported"]
    batch = [Record(Action.DELETE, b"/w/z"), Record(Action.DELETE, b"/w/a/x")]
    h.sink.apply_batch(batch, 13, first=12)
    assert h.lines() == ["DELETE '/w/z' serial=12", "DELETE '/w/a/x' serial=13"]
    h.sink.apply_batch([*batch, Record(Action.DELETE, b"/w/a/y")], 14, first=12, replayed=2)
    assert h.lines() == ["DELETE '/w/a/y' serial=14"]  # what a killed run reported is skipped


def test_a_gone_tree_is_one_line(h: Harness) -> None:
    """Entries below a directory the full sync no longer names are counted, not each printed."""
    h.full_sync(TREE, 1)
    h.lines()
    h.full_sync([TREE[0], TREE[4]], 50)
    assert h.lines() == [
        "DELETE '/w/a' serial=50 found=deleted",
        "full-sync: 2 entries compared with the baseline at serial 50: 0 created, 3 deleted,"
        " 0 changed; the baseline is now this sync",
    ]


def test_a_full_sync_cut_short_by_a_resume_leaves_the_baseline(h: Harness) -> None:
    """An INIT that a connection drop cut short, then a resumed NEXT batch: the baseline stays,
    and a later full sync is compared with it, not with the half sync."""
    h.full_sync(TREE, 1)
    h.sink.resynced()
    h.sink.apply_batch([TREE[0]], 2, init=True)  # then the connection dropped
    h.sink.apply_batch([Record(Action.DELETE, b"/w/z")], 2, first=2)  # resumed with SN
    assert h.sink.finish_init().called
    h.lines()
    h.full_sync(TREE[:4], 3)
    assert h.lines()[-1].endswith("0 created, 0 deleted, 0 changed; the baseline is now this sync")
