"""Health and the status file: what --status shows, kept O(1) and written at a bounded rate."""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock

from fs_mirror.health import Health, Status, StatusUnreadable
from fs_mirror.nodes import Stats
from fs_mirror.state import STAGING_NAME
from fs_mirror.statusfile import StatusFile, format_status, read_status, state_of, status_path

S1, S2 = "a" * 32, "b" * 32


def make(saved=None):
    clock = Clock()
    clock.advance(1000)
    stats = Stats()
    return Health(stats, clock.seconds, saved), stats, clock


def test_lag_is_what_mirrord_named_minus_what_is_applied():
    """A batch's SERIAL raises the known head; saving it brings lag back to 0."""
    h, _, _ = make((S1, 10))
    assert h.lag == 0
    h.heard(S1, 14)
    assert h.lag == 4 and h.status().head == 14
    h.saved(S1, 14)
    assert h.lag == 0 and h.status().serial == 14


def test_lag_is_unknown_during_a_full_sync_of_another_session():
    """An INIT of a new session: no lag until it is applied."""
    h, _, _ = make((S1, 10))
    h.heard(S2, 50)
    assert h.lag is None and h.status().lag is None
    h.saved(S2, 50)
    assert h.lag == 0 and h.status().session == S2


def test_counts_come_from_the_sinks_stats_not_a_copy():
    """records/files/bytes/skipped are read from Stats when a status is taken."""
    h, stats, _ = make()
    stats.records, stats.files, stats.bytes, stats.skipped, stats.refused = 7, 2, 300, 1, 2
    s = h.status()
    assert (s.records_applied, s.files_fetched, s.bytes_fetched, s.skipped) == (7, 2, 300, 3)


def test_errors_are_counted_and_the_newest_kept():
    """Each failure counts; last_error is the newest, bounded in length, with its time."""
    h, _, clock = make()
    h.failed("first")
    clock.advance(5)
    h.failed("x" * 2000)
    s = h.status()
    assert s.errors == 2 and s.last_error == "x" * 500 and s.last_error_at == 1005


def test_status_round_trips_through_json_and_refuses_junk():
    """The file form reads back equal; anything else is StatusUnreadable."""
    h, _, _ = make((S1, 3))
    s = h.status()
    assert Status.from_json(s.to_json()) == s
    for junk in (b"", b"[]", b'{"pid": 1}', b"\xff"):
        with pytest.raises(StatusUnreadable):
            Status.from_json(junk)


def test_the_file_is_written_at_a_bounded_rate(tmp_path):
    """Many changes within ``every`` give one write in the next turn (never inline: the
    batch told of must not wait for it) and one when ``every`` has passed."""
    clock = Clock()
    clock.advance(1)
    (tmp_path / STAGING_NAME.decode()).mkdir()
    h = Health(Stats(), clock.seconds)
    f = StatusFile(status_path(str(tmp_path)), h.status, clock, every=0.5)
    h.changed = f.changed
    h.saved(S1, 1)
    assert f.writes == 0  # not inline
    clock.advance(0)
    assert f.writes == 1 and read_status(str(tmp_path)).serial == 1
    for serial in range(2, 1001):
        h.saved(S1, serial)
    assert f.writes == 1
    clock.advance(0.5)
    assert f.writes == 2
    got = read_status(str(tmp_path))
    assert got is not None and got.serial == 1000
    clock.advance(10)
    assert f.writes == 2  # nothing changed meanwhile: nothing written
    f.final(h.status(running=False))
    got = read_status(str(tmp_path))
    assert f.writes == 3 and got is not None and got.running is False
    assert state_of(got) == "stopped"
    assert not [n for n in os.listdir(tmp_path / STAGING_NAME.decode()) if n.endswith(".tmp")]


def test_reading_a_datadir_where_none_ran(tmp_path):
    """No status file: None (the command says so); a broken one: StatusUnreadable."""
    assert read_status(str(tmp_path)) is None
    assert read_status(str(tmp_path / "absent")) is None
    (tmp_path / STAGING_NAME.decode()).mkdir()
    (tmp_path / STAGING_NAME.decode() / "status.json").write_bytes(b"{")
    with pytest.raises(StatusUnreadable):
        read_status(str(tmp_path))


def test_a_run_that_died_without_stopping_is_told_apart():
    """running=true but the pid gone: 'ended without a clean stop', not 'running'."""
    h, _, _ = make((S1, 1))
    s = h.status()
    assert state_of(s).startswith("running")  # this process is alive
    import dataclasses

    gone = dataclasses.replace(s, pid=2**22 + 12345)
    assert state_of(gone) == "not running (ended without a clean stop)"
    text = format_status(gone, s.updated + 60)
    assert "serial:       1" in text and "lag:          0 records" in text
    assert "(60s ago)" in text
