"""Eight fs_mirror clients on one mirrord while the worker changes 1,000 files a second.

A writer creates, overwrites, renames, chmods and deletes across 2,000 files
at a steady 1,000 operations a second: 10 s in CI's short form, or the
``--soak MINUTES`` asked for. Every 0.5 s the test samples mirrord's head
(its control socket, as ``mirrord -k status --json`` does) and the serial
each client has made durable (DATADIR/sn), and prints the lag over time
(run with ``-s`` to see it). Once the writer stops, every client must reach
the head and equal the worker within a bounded time (contract 2.2: several
clients sync concurrently, each at its own serial; one slow client holds up
nobody else).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mirrord.control import request
from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    churn,
    mirror_of,
    start_fs_mirror,
    tree_diff,
)
from tests.helpers import wait_for

CLIENTS = 8
RATE = 1000  # changes a second
FILES = 2000
SHORT_S = 10.0  # CI's short form
CONVERGE_S = 15.0  # after the writer stops, for every client to equal the worker
SAMPLE_S = 0.5


def applied(datadir: Path) -> int:
    """The serial a client has made durable (0 before its first INIT finished)."""
    try:
        return int((datadir / "sn").read_text().split(",")[1])
    except (FileNotFoundError, IndexError, ValueError):
        return 0


class Sampler:
    """Head and every client's applied serial, every SAMPLE_S seconds, on a thread."""

    def __init__(self, sock: str, datadirs: list[Path]) -> None:
        self.sock, self.datadirs = sock, datadirs
        self.rows: list[tuple[float, int, list[int]]] = []  # (t, head, serials)
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[float, int, list[int]]:
        head = int(request(self.sock, "status")["head"])
        row = (time.monotonic() - self.t0, head, [applied(d) for d in self.datadirs])
        self.rows.append(row)
        return row

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.sample()
            n += 1
            self.stop.wait(max(0.0, self.t0 + n * SAMPLE_S - time.monotonic()))

    def lag_seconds(self, i: int, row: int) -> float:
        """How long ago the head first passed client ``i``'s serial at sample ``row``."""
        t, head, serials = self.rows[row]
        if serials[i] >= head:
            return 0.0
        for t_then, head_then, _ in self.rows[: row + 1]:
            if head_then > serials[i]:
                return t - t_then
        return t - self.rows[0][0]

    def table(self, writer_stop: float) -> str:
        names = " ".join(f"{f'c{i}':>7}" for i in range(len(self.datadirs)))
        lines = [f"{'t/s':>6} {'head':>8} {names}   (lag in records; * = writer stopped)"]
        for t, head, serials in self.rows:
            mark = "*" if t >= writer_stop else " "
            lags = " ".join(f"{head - s:>7}" for s in serials)
            lines.append(f"{t:>5.1f}{mark} {head:>8} {lags}")
        return "\n".join(lines)


@pytest.fixture
def soak_seconds(request: pytest.FixtureRequest) -> float:
    minutes = request.config.getoption("--soak", default=0) or 0
    return float(minutes) * 60 or SHORT_S


def test_eight_clients_under_1000_changes_a_second(tmp_path: Path, soak_seconds: float):
    """Eight local-backend clients on one mirrord keep up with 1,000 changes a second; once
    the writer stops each reaches mirrord's head and equals the worker within CONVERGE_S."""
    src = tmp_path / "src"
    src.mkdir()
    worker = Worker(tmp_path / "w", [src])
    worker.start()
    datadirs = [tmp_path / f"m{i}" for i in range(CLIENTS)]
    clients: list[Proc] = []
    sampler = Sampler(os.path.join(worker.datadir, "mirrord.sock"), datadirs)
    stop, counts = threading.Event(), {"ops": 0}
    writer = threading.Thread(
        target=churn,
        args=([src], stop, counts),
        kwargs={"rate": RATE, "files": FILES, "dirs": 20, "size": (0, 512)},
        daemon=True,
    )
    try:
        clients = [start_fs_mirror(worker, d) for d in datadirs]
        for c in clients:
            c.wait_line("init finished", 30)
        sampler.thread.start()
        began = time.monotonic()
        writer.start()
        wait_for(lambda: time.monotonic() - began >= soak_seconds or not writer.is_alive(),
                 soak_seconds + 10, 0.05, "the writer's time")  # fmt: skip
        stop.set()
        writer.join(10)
        assert not writer.is_alive()
        wrote = time.monotonic() - began
        writer_stop = time.monotonic() - sampler.t0
        head = int(request(sampler.sock, "status")["head"])
        # Every client reaches the head; when each did is read from the samples.
        reached: dict[int, float] = {}

        def all_reached() -> bool:
            for i, d in enumerate(datadirs):
                if i not in reached and applied(d) >= head:
                    reached[i] = time.monotonic() - began - wrote
            return len(reached) == CLIENTS

        try:
            wait_for(all_reached, CONVERGE_S, 0.05, f"every client at head {head}")
        finally:
            sampler.stop.set()
            sampler.thread.join(5)
            print(f"\nwriter: {counts} in {wrote:.1f}s ({counts['ops'] / wrote:.0f} ops/s); "
                  f"head {head}")  # fmt: skip
            print(sampler.table(writer_stop))
            during = [r for r, (t, _, _) in enumerate(sampler.rows) if t < writer_stop]
            for i in range(CLIENTS):
                worst = max((r[1] - r[2][i] for r in sampler.rows if r[0] < writer_stop),
                            default=0)  # fmt: skip
                worst_s = max((sampler.lag_seconds(i, r) for r in during), default=0.0)
                print(
                    f"c{i}: max lag {worst} records (~{worst_s:.1f}s) while writing; "
                    f"at head {reached.get(i, float('nan')):.2f}s after the writer stopped"
                )
        differences = 0
        for d in datadirs:
            diff = tree_diff(src, mirror_of(d, src))
            differences += len(diff)
            assert not diff, f"{d}: " + "\n".join(diff[:20])
        for c in clients:
            assert c.count("full sync:") == 1, c.output()[-3000:]
            assert_clean_output(c)
        print(f"clients: {CLIENTS}; differences found: {differences}")
    finally:
        stop.set()
        sampler.stop.set()
        for c in clients:
            c.stop()
        worker.stop()


def test_move_after_a_late_fetch_keeps_the_moved_content(tmp_path: Path):
    """The load's first failure, reduced: while fs_mirror is down the worker writes X to a,
    renames a to b and writes Y to a new a. Replayed one record a batch (batch=1), the FWRITE
    of a fetches Y (a is already the new file); the MOVE must then not carry Y to b: the
    mirror ends with b = X and a = Y, as the worker has them."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"old\n")
    worker = Worker(tmp_path / "w", [src], options=["-o", "batch=1"])
    worker.start()
    client = start_fs_mirror(worker, tmp_path / "m")
    try:
        client.wait_line("init finished")
        wait_for(lambda: not tree_diff(src, mirror_of(tmp_path / "m", src)), 20, 0.05, "INIT")
        assert client.stop() == 0
        (src / "a").write_bytes(b"X\n")
        os.rename(src / "a", src / "b")
        (src / "a").write_bytes(b"Y\n")
        client = start_fs_mirror(worker, tmp_path / "m")
        client.wait_line("resumed session")
        head = int(request(os.path.join(worker.datadir, "mirrord.sock"), "status")["head"])
        wait_for(lambda: applied(tmp_path / "m") >= head, 20, 0.05, f"the client at {head}")
        assert not tree_diff(src, mirror_of(tmp_path / "m", src))
    finally:
        client.stop()
        worker.stop()
