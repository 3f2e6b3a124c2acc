"""fs_mirror.service wiring, on Twisted's memory reactor (no sockets opened)."""

from __future__ import annotations

import datetime
import io
import os

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import MemoryReactorClock

from cmdconfig import CommandError, ConfigError, load
from fs_mirror.config import SCHEMA
from fs_mirror.service import FsMirrorService
from fs_mirror.sink import ReportSink
from protocol.records import Action, Meta, Record

DAY = datetime.date(2026, 11, 22)


def config(tmp_path, *extra: str):
    items = ["host=roc", f"datadir={tmp_path / 'data'}", *extra]
    return load(SCHEMA, None, [tuple(i.split("=", 1)) for i in items])


def sync(f, *args):
    return maybeDeferred(f, *args)


def test_rotation_waits_for_the_batch_in_hand(tmp_path):
    """A rotation asked for while a batch holds the gate runs only after the batch."""
    cfg = config(tmp_path, "fssync.type=local", f"rotate.backdir={tmp_path / 'back'}")
    service = FsMirrorService(cfg, reactor=MemoryReactorClock())
    try:
        service.client.run_blocking = sync
        os.makedirs(tmp_path / "data/srv")
        (tmp_path / "data/srv/f").write_text("v1")
        batch = service.client.gate.acquire()
        assert batch.called
        done = service.rotate_now(DAY)
        assert not done.called and not (tmp_path / "back").exists()
        service.client.gate.release()
        assert done.called
        assert os.path.samefile(tmp_path / "back/roc/2026-11-22/srv/f", tmp_path / "data/srv/f")
    finally:
        service.state.release()


def test_service_takes_and_releases_the_datadir(tmp_path):
    """The service takes the datadir; releasing it lets the next one start."""
    cfg = config(tmp_path, "fssync.type=report")
    first = FsMirrorService(cfg, reactor=MemoryReactorClock(), out=io.StringIO())
    assert first.state.held
    first.state.release()
    second = FsMirrorService(cfg, reactor=MemoryReactorClock(), out=io.StringIO())
    assert second.state.held
    second.state.release()


def test_backdir_inside_datadir_is_a_config_error(tmp_path):
    """rotate.backdir inside the mirror is refused at start, naming the key."""
    cfg = config(tmp_path, "fssync.type=local", f"rotate.backdir={tmp_path / 'data/back'}")
    with pytest.raises(ConfigError, match="rotate.backdir"):
        FsMirrorService(cfg, reactor=MemoryReactorClock())


def test_missing_tls_ca_names_the_key(tmp_path):
    """tls=yes with an unreadable tls.ca is a config error naming tls.ca, and frees the lock."""
    cfg = config(tmp_path, "fssync.type=local", "tls=yes", f"tls.ca={tmp_path / 'none.pem'}")
    with pytest.raises(ConfigError, match="tls.ca"):
        FsMirrorService(cfg, reactor=MemoryReactorClock())
    again = FsMirrorService(config(tmp_path, "fssync.type=local"), reactor=MemoryReactorClock())
    again.state.release()


def test_unknown_report_hook_is_refused(tmp_path):
    """A report.exec program that does not exist is a config error naming report.exec."""
    cfg = config(tmp_path, "fssync.type=report", "report.exec=/no/such/hook --x")
    with pytest.raises(ConfigError, match="report.exec: .*not found"):
        FsMirrorService(cfg, reactor=MemoryReactorClock(), out=io.StringIO())


def test_report_sink_prints_changes_after_the_baseline_with_serial(tmp_path):
    """ReportSink records the INIT as the baseline (one line) and reports later changes; it
    changes nothing of the mirror."""
    out = io.StringIO()
    cfg = config(tmp_path, "fssync.type=report")
    service = FsMirrorService(cfg, reactor=MemoryReactorClock(), out=out)
    try:
        sink = service.client.sink
        assert isinstance(sink, ReportSink) and not sink.mirrors
        sink.resynced()
        sink.apply_batch([Record(Action.CREATE, b"/etc")], 1, init=True)
        sink.finish_init()
        sink.apply_batch([Record(Action.ATTRIB, b"/etc/passwd", meta=Meta(mode=0o666))], 2, first=2)
        lines = out.getvalue().splitlines()
        assert len(lines) == 2 and "baseline: 1 entries recorded at serial 1" in lines[0]
        assert "/etc/passwd" in lines[1] and "serial=2" in lines[1]
        assert sorted(os.listdir(tmp_path / "data")) == [".fs_mirror.d", ".fs_mirror.lock"]
    finally:
        sink.close()
        service.state.release()


def test_a_baseline_that_cannot_be_opened_is_a_clear_error(tmp_path):
    """Report mode whose baseline directory is unusable stops at start saying where and how."""
    staging = tmp_path / "data" / ".fs_mirror.d"
    staging.mkdir(parents=True)
    (staging / "report-baseline").write_text("not a database home")
    cfg = config(tmp_path, "fssync.type=report")
    with pytest.raises(CommandError, match="report-baseline.*record a new baseline"):
        FsMirrorService(cfg, reactor=MemoryReactorClock(), out=io.StringIO())
    again = FsMirrorService(config(tmp_path, "fssync.type=local"), reactor=MemoryReactorClock())
    again.state.release()  # the lock was let go
