"""Where inotify loses track, a real mirrord still converges: overflow, watch cap, rescans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol.records import Record
from tests.daemons import Proc, Replay, Worker, assert_clean_output, command

QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(includes: list[Path], options: list[str] = (), start: bool = True) -> Worker:
        w = Worker(tmp_path / "data", includes, options=list(options))
        if start:
            w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        if w.proc is not None:
            assert w.stop() == 0
            assert_clean_output(w.proc)


def ctl(worker: Worker, *words: str) -> subprocess.CompletedProcess[str]:
    argv = [command("mirrord"), "-o", f"datadir={worker.datadir}", "-k", *words]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_queue_overflow_is_recovered(make_worker, tmp_path):
    """A real IN_Q_OVERFLOW is logged, recovered by a rescan, and the model converges."""
    if os.geteuid() != 0:
        pytest.skip("needs root to lower fs.inotify.max_queued_events")
    src = tmp_path / "src"
    for i in range(10):
        (src / f"d{i}").mkdir(parents=True)
    w = make_worker([src], start=False)
    old = QUEUED.read_text()
    try:
        QUEUED.write_text("64\n")
        # the value is read when mirrord creates its inotify instance, which it
        # then reports as a warning: restore the global value right after that
        w.proc = Proc(w.argv)
        w.proc.wait_line("max_queued_events is 64")
    finally:
        QUEUED.write_text(old)
    w.proc.wait_line("boot init finished")
    r = Replay(w.client()).init()
    w.proc.signal(signal.SIGSTOP)  # it reads nothing now: the kernel queue overflows
    try:
        for i in range(10):
            for j in range(300):
                (src / f"d{i}" / f"f{j}").write_bytes(b"x" * j)
        (src / "d3" / "f7").unlink()
        (src / "d4").rename(src / "d4-renamed")
    finally:
        w.proc.signal(signal.SIGCONT)
    w.proc.wait_line("event queue overflowed")
    w.proc.wait_line("overflow rescan done")
    done = next(line for line in w.proc.lines if "overflow rescan done" in line)
    assert "directories listed" in done
    r.converge([src], timeout=20)
    fresh = Replay(w.client()).init()  # still serving new clients
    assert fresh.model == r.model
    status = json.loads(ctl(w, "status", "--json").stdout)
    assert status["overflows"] >= 1  # contract 6: counted in -k status


def test_watch_cap_polls_the_rest(make_worker, tmp_path):
    """With watch.max below the directory count, the rest is polled and changes still arrive."""
    src = tmp_path / "src"
    for i in range(20):
        (src / f"d{i:02}" / "inner").mkdir(parents=True)
    w = make_worker([src], ["-o", "watch.max=5", "-o", "poll.interval=1"])
    boot = next(line for line in w.proc.lines if "boot init finished" in line)
    assert "5 directories watched" in boot
    w.proc.wait_line("sub-trees are polled every 1")
    status = ctl(w, "status")
    assert status.returncode == 0, status.stderr
    assert "watched dirs:     5" in status.stdout
    polled = next(line for line in status.stdout.splitlines() if line.startswith("polled"))
    assert int(polled.split()[-1]) > 0, status.stdout
    r = Replay(w.client()).init()
    (src / "d19" / "inner" / "late.txt").write_bytes(b"seen by polling")
    os.rmdir(src / "d18" / "inner")
    r.converge([src], timeout=10)
    assert os.fsencode(src / "d19" / "inner" / "late.txt") in r.model


def test_verification_rescan_sees_writes_through_an_outside_hard_link(make_worker, tmp_path):
    """A write inotify cannot see (through a hard link outside the tree) is found by rescan."""
    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    (src / "shared").write_bytes(b"old")
    os.link(src / "shared", outside / "alias")
    w = make_worker([src], ["-o", "rescan.interval=1"])
    r = Replay(w.client()).init()
    r.drain(0.2)
    assert not any(b"shared" in line for _, line in r.received)
    with open(outside / "alias", "ab") as f:
        f.write(b" and new")
    w.proc.wait_line("verification rescan done", count=1)
    r.converge([src], timeout=10)
    written = [Record.decode(line) for _, line in r.received if b"/shared" in line]
    assert [rec.meta.size for rec in written] == [len(b"old and new")]
    done = [line for line in w.proc.lines if "verification rescan done" in line]
    assert "directories listed" in done[0]
