"""Record order against a real mirrord: no record names a path an earlier one removed.

A client applies records in order (contract 2.2), so a MOVE into a directory
that an earlier record deleted or moved away re-creates that directory on
the client.  These tests make a directory, rename a file into it, then rename
the directory on and on (finally into an excluded sub-tree) faster than
mirrord reads the events, and replay INIT plus every later record into a
model that must end equal to the disk.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol.records import Action, Record
from tests.daemons import Replay, Worker, assert_clean_output


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(includes: list[Path], excludes: list[Path] = ()) -> Worker:
        w = Worker(tmp_path / "data", includes, excludes)
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        assert w.stop() == 0
        assert_clean_output(w.proc)


def _below(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top + b"/")


def removed_then_named(received: list[tuple[int, bytes]]) -> list[str]:
    """Records naming a path below one that an earlier record deleted or moved away,
    with no CREATE/FWRITE/SYMLINK/MOVE of that directory in between."""
    gone: set[bytes] = set()
    problems = []
    for serial, line in received:
        rec = Record.decode(line)
        named = [rec.path] if rec.action is not Action.MOVE else [rec.path, rec.target]
        for path in named:
            assert path is not None
            for top in gone:
                if path != top and _below(path, top):
                    problems.append(f"{serial}: {line!r} is below {top!r}, removed before")
        if rec.action is Action.DELETE:
            gone.add(rec.path)
        elif rec.action is Action.MOVE:
            gone.add(rec.path)
            gone = {g for g in gone if not _below(rec.target, g) and not _below(g, rec.target)}
        else:
            gone = {g for g in gone if not _below(rec.path, g) and not _below(g, rec.path)}
    return problems


def test_file_moved_into_a_directory_renamed_on_and_away(make_worker, tmp_path):
    """mkdir X.tmp, fill, mv to X, mv a file over X/g, chmod X, mv X Y Z, append, mv to W,
    mv W into an excluded tree: in 100 fresh directories at full speed (some while mirrord
    is stopped, so it reads them all at once), the replayed model ends equal to the disk
    and no record names a path below one removed before it."""
    src = tmp_path / "src"
    excl = src / "excl"
    rounds = 100
    for i in range(rounds):
        base = src / f"r{i}"
        base.mkdir(parents=True)
        (base / "a").write_bytes(b"a" * i)
    excl.mkdir()
    w = make_worker([src], [excl])
    r = Replay(w.client()).init()
    for i in range(rounds):
        if i % 20 == 0:  # stopped for rounds 20-39 and 60-79
            w.proc.signal(signal.SIGCONT if i % 40 == 0 else signal.SIGSTOP)
        base = src / f"r{i}"
        os.mkdir(base / "X.tmp")
        (base / "X.tmp" / "g").write_bytes(b"g")
        os.rename(base / "X.tmp", base / "X")
        os.rename(base / "a", base / "X" / "g")
        os.chmod(base / "X", 0o711)
        os.rename(base / "X", base / "Y")
        os.rename(base / "Y", base / "Z")
        with open(base / "Z" / "g", "ab") as f:
            f.write(b"more")
        os.rename(base / "Z", base / "W")
        os.rename(base / "W", excl / f"w{i}")
    w.proc.signal(signal.SIGCONT)
    r.converge([src], [excl], timeout=30)
    assert removed_then_named(r.received) == []
