"""Kernel races against a real mirrord: what a replaying client sees equals the tree.

Each test drives real inotify faster than mirrord reads it, then replays
INIT and every later record into a model and compares it with the disk.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protocol.records import Record
from tests.daemons import Replay, Worker, assert_clean_output


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(includes: list[Path], excludes: list[Path] = (), options: list[str] = ()) -> Worker:
        w = Worker(tmp_path / "data", includes, excludes, options=list(options))
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        assert w.stop() == 0
        assert_clean_output(w.proc)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


def replay(worker: Worker) -> Replay:
    return Replay(worker.client()).init()


@contextmanager
def paused(worker: Worker, really: bool = True) -> Iterator[None]:
    """Stop mirrord (SIGSTOP) so that every event below is read only afterwards, at once."""
    if really:
        worker.proc.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        worker.proc.signal(signal.SIGCONT)


def test_vanished_files_and_trees_leave_nothing_behind(make_worker, src):
    """Files and directory trees created and removed faster than events are read leave no trace."""
    (src / "keep").mkdir()
    w = make_worker([src])
    r = replay(w)
    for i in range(300):
        with paused(w, i % 100 == 0):  # some rounds running, some read all at once
            f = src / f"f{i}"
            f.write_bytes(b"x" * i)
            f.unlink()
            d = src / f"d{i}"
            (d / "a" / "b").mkdir(parents=True)
            (d / "a" / "b" / "file").write_bytes(b"y")
            os.symlink("nowhere", d / "a" / "link")
            shutil.rmtree(d)
            if i % 3 == 0:
                (src / "keep" / f"k{i}").write_bytes(b"k")
    r.converge([src])
    assert (src / "keep" / "k0").as_posix().encode() in r.model


def test_explode_a_path_changing_type_repeatedly(make_worker, src):
    """A path replaced file -> dir with contents -> symlink -> file within one read ends right."""
    w = make_worker([src])
    r = replay(w)
    for i in range(100):
        if i % 25 == 0:
            w.proc.signal(signal.SIGCONT if i % 50 else signal.SIGSTOP)
        p = src / f"p{i % 7}"
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        p.write_bytes(b"file")
        p.unlink()
        (p / "inner").mkdir(parents=True)
        (p / "inner" / "x").write_bytes(b"x" * i)
        shutil.rmtree(p)
        os.symlink(f"target{i}", p)
        p.unlink()
        p.write_bytes(b"z" * i)
    w.proc.signal(signal.SIGCONT)
    r.converge([src])
    assert r.model[os.fsencode(src / "p0")][0] == "file"


def test_recursive_mkdir_and_copytree_report_every_file(make_worker, src, tmp_path):
    """mkdir -p with files and a copytree of 2000 files: every directory and file is recorded."""
    outside = tmp_path / "outside"
    for i in range(40):
        d = outside / f"dir{i:02}" / "deeper"
        d.mkdir(parents=True)
        for j in range(50):
            (d / f"file{j:02}").write_bytes(b"%d" % (i * j))
    w = make_worker([src])
    r = replay(w)
    (src / "a" / "b" / "c").mkdir(parents=True)
    (src / "a" / "b" / "c" / "leaf").write_bytes(b"leaf")
    (src / "a" / "top").write_bytes(b"top")
    shutil.copytree(outside, src / "copy")
    r.converge([src], timeout=20)
    written = {Record.decode(line).path for _, line in r.received if line.startswith(b"FWRITE:")}
    created = {Record.decode(line).path for _, line in r.received if line.startswith(b"CREATE:")}
    files = [p for p, v in r.model.items() if v[0] == "file" and b"/copy/" in p]
    assert len(files) == 2000
    assert set(files) <= written
    assert os.fsencode(src / "a" / "b" / "c") in created
    assert os.fsencode(src / "a" / "b" / "c" / "leaf") in written


def test_directory_moves_in_out_and_across_excludes(make_worker, src, tmp_path):
    """Moves inside (one MOVE), out (DELETE), in (CREATE+FWRITE), onto/from excluded names."""
    outside = tmp_path / "outside"
    (outside / "incoming" / "sub").mkdir(parents=True)
    (outside / "incoming" / "sub" / "f").write_bytes(b"in")
    (outside / "incoming" / "g").write_bytes(b"gg")
    (src / "dir" / "nested").mkdir(parents=True)
    (src / "dir" / "nested" / "file").write_bytes(b"n")
    (src / "leaving" / "x").mkdir(parents=True)
    (src / "tohide").mkdir()
    (src / "tohide" / "secret").write_bytes(b"s")
    (src / "private" / "revealed").mkdir(parents=True)
    (src / "private" / "revealed" / "r").write_bytes(b"r")
    excluded = [src / "private", src / "hidden"]
    w = make_worker([src], excluded)
    r = replay(w)
    b = os.fsencode

    # a move inside the tree: one MOVE record, and new files follow the new path
    (src / "dir").rename(src / "moved")
    (src / "moved" / "nested" / "after").write_bytes(b"after")
    r.converge([src], excluded)
    moves = [Record.decode(line) for _, line in r.received if line.startswith(b"MOVE:")]
    assert [(m.path, m.target) for m in moves] == [(b(src / "dir"), b(src / "moved"))]
    assert b(src / "moved" / "nested" / "after") in r.model

    # out of the tree, into it, onto an excluded name, and out of an excluded dir
    mark = len(r.received)
    (src / "leaving").rename(tmp_path / "left")
    (outside / "incoming").rename(src / "incoming")
    (src / "tohide").rename(src / "hidden")
    (src / "private" / "revealed").rename(src / "revealed")
    r.converge([src], excluded)
    later = [Record.decode(line) for _, line in r.received[mark:]]
    pairs = {(rec.action.value, rec.path) for rec in later}
    assert ("DELETE", b(src / "leaving")) in pairs
    assert ("CREATE", b(src / "incoming" / "sub")) in pairs
    assert ("FWRITE", b(src / "incoming" / "sub" / "f")) in pairs
    assert ("FWRITE", b(src / "incoming" / "g")) in pairs
    assert ("DELETE", b(src / "tohide")) in pairs
    assert ("FWRITE", b(src / "revealed" / "r")) in pairs
    for _, line in r.received:
        rec = Record.decode(line)
        for path in (rec.path, rec.target if rec.action.value == "MOVE" else None):
            if path is not None:
                assert not any(path.startswith(b(x)) for x in excluded), line


def test_directory_moved_out_and_back_in_stays_watched(make_worker, src, tmp_path):
    """A directory moved out and back in (same or new name) within one read is still watched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("same", "renamed"):
        (src / name / "sub").mkdir(parents=True)
        (src / name / "sub" / "f").write_bytes(b"f")
    w = make_worker([src])
    r = replay(w)
    with paused(w):
        (src / "same").rename(outside / "same")
        (outside / "same").rename(src / "same")
        (src / "renamed").rename(outside / "renamed")
        (outside / "renamed").rename(src / "new-name")
    r.converge([src])
    r.drain(0.5)  # quiet for longer than the move-wait (0.1 s): unpaired halves expired
    for top in ("same", "new-name"):
        (src / top / "later").write_bytes(b"seen")
        (src / top / "sub" / "later").write_bytes(b"seen too")
    r.converge([src])


@pytest.mark.parametrize(
    ("seed", "rounds", "options"),
    [(8, 15, []), (2, 8, ["-o", "watch.max=3", "-o", "poll.interval=1"])],
    ids=["watched", "watch-cap-3"],
)
def test_random_renames_in_out_and_across_converge(
    make_worker, src, tmp_path, seed, rounds, options
):
    """Seeded random creates, renames in/out/inside, deletes, symlinks: every round converges."""
    outside = tmp_path / "outside"
    outside.mkdir()
    excluded = [src / "x"]
    w = make_worker([src], excluded, options)
    r = replay(w)
    rnd = random.Random(seed)
    names = ["a", "b", "c", "x", "d/e", "a/b", "b/c"]
    for round_ in range(rounds):
        with paused(w, round_ % 2 == 0):
            for _ in range(30):
                p, q = src / rnd.choice(names), src / rnd.choice(names)
                op = rnd.randrange(6)
                try:
                    if op == 0:
                        p.mkdir(parents=True, exist_ok=True)
                        (p / f"f{rnd.randrange(5)}").write_bytes(b"x" * rnd.randrange(100))
                    elif op == 1 and p.exists() and not q.exists() and p not in q.parents:
                        q.parent.mkdir(parents=True, exist_ok=True)
                        p.rename(q)
                    elif op == 2 and p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    elif op == 2 and (p.is_symlink() or p.is_file()):
                        p.unlink()
                    elif op == 3 and p.is_dir():
                        p.rename(outside / f"o{rnd.randrange(10**6)}")
                    elif op == 4 and not p.exists() and (outs := sorted(outside.iterdir())):
                        p.parent.mkdir(parents=True, exist_ok=True)
                        rnd.choice(outs).rename(p)
                    elif op == 5 and not p.exists() and not p.is_symlink():
                        p.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(f"t{rnd.randrange(9)}", p)
                except OSError:  # e.g. a parent that is now a symlink or a file
                    pass
        r.converge([src], excluded)
    for _, line in r.received:
        fields = Record.decode(line)
        for path in (fields.path, fields.target if fields.action.value == "MOVE" else None):
            assert path is None or not path.startswith(os.fsencode(src / "x")), line


def test_directory_recreated_where_one_moved_away_is_watched(make_worker, src, tmp_path):
    """A new directory tree made at the path of one just moved out is watched, not the old one."""
    (src / "b" / "c").mkdir(parents=True)
    (src / "b" / "c" / "old").write_bytes(b"old")
    w = make_worker([src])
    r = replay(w)
    with paused(w):
        shutil.rmtree(src / "b" / "c")
        (src / "b").rename(tmp_path / "gone")
        (src / "b" / "c").mkdir(parents=True)
        (src / "b" / "c" / "new").write_bytes(b"new")
    r.converge([src])
    r.drain(0.5)  # quiet for longer than the move-wait (0.1 s): the old half expired
    (src / "b" / "c" / "later").write_bytes(b"later")
    (src / "b" / "later").write_bytes(b"later")
    r.converge([src])
