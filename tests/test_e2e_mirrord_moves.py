"""Moves out of the tree racing renames above them, against a real mirrord.

A rename out of the watched trees (or into an excluded one) is one
IN_MOVED_FROM whose partner never comes: mirrord waits ``move_wait`` for it,
then logs a DELETE. A directory above it renamed during that wait must not
leave the DELETE at the old path, which the snapshot has already left (the
mirrors then kept the moved-out directory for good). Each test runs its
sequence in many fresh sub-directories at full speed, some rounds while
mirrord is stopped so that it reads them all at once, and replays INIT plus
every later record into a model that must end equal to the disk.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemons import Replay, Worker, assert_clean_output
from tests.helpers import wait_for
from tests.test_e2e_mirrord_order import removed_then_named

ROUNDS = 60


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(includes: list[Path], excludes: list[Path] = (), options: list[str] = ()) -> Worker:
        w = Worker(tmp_path / "data", includes, excludes, options)
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        assert w.stop() == 0
        assert_clean_output(w.proc)


def _stop_some(w: Worker, i: int) -> None:
    """Stopped for rounds 15-29 and 45-59: those events are read all at once."""
    if i % 15 == 0:
        w.proc.signal(signal.SIGCONT if i % 30 == 0 else signal.SIGSTOP)


def _logged(r: Replay, path: Path) -> bool:
    """Apply what has come; has a record named ``path`` yet?"""
    r.pump(0.05)
    name = os.fsencode(path)
    return any(name in line for _, line in r.received)


def _deleted(r: Replay, path: Path) -> bool:
    """Apply what has come; has a DELETE of ``path`` itself come yet?"""
    r.pump(0.05)
    line = b"DELETE:" + os.fsencode(path)
    return any(rec.split(b"\t")[0] == line for _, rec in r.received)


def _fill(top: Path) -> None:
    (top / "a" / "b" / "c" / "d").mkdir(parents=True)
    (top / "a" / "b" / "c" / "d" / "f").write_bytes(b"f")
    (top / "a" / "b" / "c" / "g").write_bytes(b"g")
    (top / "a" / "b" / "h").write_bytes(b"h")


def test_moved_out_while_a_parent_is_renamed(make_worker, tmp_path):
    """mv a/b/c out of the tree (and a/b/e into an excluded tree), then at once
    mv a z: the mirrors lose c and e at z/b, where the snapshot has them."""
    src, out = tmp_path / "src", tmp_path / "out"
    excl = src / "excl"
    for i in range(ROUNDS):
        _fill(src / f"r{i}")
        (src / f"r{i}" / "a" / "b" / "e").mkdir()
    excl.mkdir()
    out.mkdir()
    w = make_worker([src], [excl])
    r = Replay(w.client()).init()
    for i in range(ROUNDS):
        _stop_some(w, i)
        top = src / f"r{i}"
        os.rename(top / "a" / "b" / "c", out / f"c{i}")
        os.rename(top / "a" / "b" / "e", excl / f"e{i}")
        os.rename(top / "a", top / "z")
    w.proc.signal(signal.SIGCONT)
    r.converge([src], [excl], timeout=30)
    assert removed_then_named(r.received) == []


def test_directory_renamed_twice_then_emptied_out_of_the_tree(make_worker, tmp_path):
    """The torture suite's seed 1, reduced: mv a/b a/b2 and mv a q/a2 at once, then
    mv q/a2/b2/c out of the tree and mv q/a2/b2 into an excluded tree, then mv q
    q3 while those wait for a partner that never comes: nothing of b2 stays.
    (The two renames at once must not lose the watch of b2 or a2 either.)"""
    src, out = tmp_path / "src", tmp_path / "out"
    excl = src / "excl"
    for i in range(ROUNDS):
        _fill(src / f"r{i}")
        (src / f"r{i}" / "q").mkdir()
    excl.mkdir()
    out.mkdir()
    w = make_worker([src], [excl])
    r = Replay(w.client()).init()
    for i in range(ROUNDS):
        _stop_some(w, i)
        top = src / f"r{i}"
        os.rename(top / "a" / "b", top / "a" / "b2")
        os.rename(top / "a", top / "q" / "a2")
        os.rename(top / "q" / "a2" / "b2" / "c", out / f"c{i}")
        os.rename(top / "q" / "a2" / "b2", excl / f"b{i}")
        os.rename(top / "q", top / "q3")
    w.proc.signal(signal.SIGCONT)
    r.converge([src], [excl], timeout=30)
    assert removed_then_named(r.received) == []


def test_directory_bounced_out_and_back_twice_stays_watched(make_worker, tmp_path):
    """The torture suite's seed 7, reduced: mv a into an excluded tree and back
    as b, then (in half the rounds once mirrord has walked b) out of the tree
    and back as c, within one move-wait; what is made in c and below it
    afterwards reaches the mirrors: its watch is not dropped when the second
    move-wait ends."""
    src, out = tmp_path / "src", tmp_path / "out"
    excl = src / "excl"
    for i in range(ROUNDS):
        _fill(src / f"r{i}")
    excl.mkdir()
    out.mkdir()
    w = make_worker([src], [excl])
    r = Replay(w.client()).init()
    for i in range(ROUNDS):
        top = src / f"r{i}"
        os.rename(top / "a", excl / f"a{i}")
        os.rename(excl / f"a{i}", top / "b")
        if i % 2:  # mirrord has walked b (and met its watch again) before it leaves
            b = top / "b"
            wait_for(lambda b=b: _logged(r, b), timeout=5, message=f"{b} logged")
        os.rename(top / "b", out / f"b{i}")
        os.rename(out / f"b{i}", top / "c")
    w.proc.signal(signal.SIGCONT)
    r.converge([src], [excl], timeout=30)
    for i in range(ROUNDS):  # after both move-waits have run out
        top = src / f"r{i}" / "c"
        (top / "new").write_bytes(b"n")
        (top / "b" / "c" / "x").mkdir()
    r.converge([src], [excl], timeout=30)
    assert removed_then_named(r.received) == []


def test_directory_moved_into_an_unwalked_directory_then_renamed_twice(make_worker, tmp_path):
    """The torture suite's seed 1 (ftp), reduced: mv d into a new directory p
    before mirrord watches p (the IN_MOVED_TO goes unheard), and once mirrord
    has walked p, mv p/d1 p/d2 and mv p/d2 q/d3 within the first rename's
    move-wait; when that wait runs out, what is made, linked and moved out in
    d3 afterwards still reaches the mirrors: d3 keeps its watch."""
    src, out = tmp_path / "src", tmp_path / "out"
    rounds = 50
    for i in range(rounds):
        _fill(src / f"r{i}")
        (src / f"r{i}" / "q").mkdir()
    out.mkdir()
    # long enough for the walk of p and two renames to land within it
    w = make_worker([src], [], ["-o", "move.wait=3"])
    r = Replay(w.client()).init()
    w.proc.signal(signal.SIGSTOP)  # p is made and filled in one read: not watched yet
    for i in range(rounds):
        top = src / f"r{i}"
        (top / "p").mkdir()
        os.rename(top / "a", top / "p" / "d1")
    w.proc.signal(signal.SIGCONT)
    for i in range(rounds):
        d1 = src / f"r{i}" / "p" / "d1" / "b"
        wait_for(lambda d1=d1: _logged(r, d1), timeout=10, message=f"{d1} logged")
    for i in range(rounds):
        top = src / f"r{i}"
        os.rename(top / "p" / "d1", top / "p" / "d2")
        os.rename(top / "p" / "d2", top / "q" / "d3")
    for i in range(rounds):  # the first rename's move-wait has run out: a is deleted
        gone = src / f"r{i}" / "a"
        wait_for(lambda gone=gone: _deleted(r, gone), timeout=20, message=f"{gone} deleted")
    for i in range(rounds):
        d3 = src / f"r{i}" / "q" / "d3"
        (d3 / "new").write_bytes(b"n")
        os.symlink("nowhere", d3 / "link")
        os.rename(d3 / "b" / "h", src / f"r{i}" / "h")
        (d3 / "b" / "c" / "x").mkdir()
    r.converge([src], [], timeout=30)
    assert removed_then_named(r.received) == []
