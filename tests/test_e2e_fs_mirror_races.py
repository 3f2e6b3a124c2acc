"""fs_mirror against a real mirrord where the worker moved on before the client caught up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemons import (
    Proc,
    Replay,
    Worker,
    assert_clean_output,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for


def fs_mirror(worker: Worker, datadir: Path, *extra: str) -> Proc:
    return start_fs_mirror(worker, datadir, *extra, verbose=True)


def test_vanished_exploded_and_moved_away_files_end_right(tmp_path: Path):
    """One record per batch, replayed late: vanished, file-became-dir and moved sources converge."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_bytes(b"keep")
    w = Worker(tmp_path / "mirrord", [src], options=["-o", "batch=1"])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    again: Proc | None = None
    try:
        client.wait_line("init finished", 30)
        assert client.stop() == 0
        watch = Replay(w.client()).init()

        def logged(change: Callable[[], object], record: bytes) -> None:
            """Make a change and wait until mirrord has logged it (a durable record)."""
            change()

            def seen() -> bool:
                watch.pump(0.1)
                return any(record in r for _, r in watch.received)

            wait_for(seen, 10, 0, repr(record))

        s = os.fsencode(src)
        logged(lambda: (src / "gone").write_bytes(b"short-lived"), b"FWRITE:" + s + b"/gone")
        logged(lambda: os.unlink(src / "gone"), b"DELETE:" + s + b"/gone")
        logged(lambda: (src / "explode").write_bytes(b"file"), b"FWRITE:" + s + b"/explode")
        logged(lambda: os.unlink(src / "explode"), b"DELETE:" + s + b"/explode")
        logged(lambda: (src / "explode").mkdir(), b"CREATE:" + s + b"/explode")
        logged(lambda: (src / "moved").write_bytes(b"moved"), b"FWRITE:" + s + b"/moved")
        logged(lambda: os.rename(src / "moved", src / "moved-to"), b"MOVE:" + s + b"/moved\t")
        os.unlink(mirror_of(backup, src) / "keep")  # a DELETE of something absent locally
        logged(lambda: os.unlink(src / "keep"), b"DELETE:" + s + b"/keep")
        watch.client.close()
        again = fs_mirror(w, backup)
        wait_converged(src, backup, timeout=25)
        assert again.count("init finished") == 0
        late = again.count("vanished on worker") + again.count("not a file on worker")
        assert late >= 3, again.output()  # gone, explode, moved
    finally:
        if again is not None:
            assert again.stop() == 0
        w.stop()
    assert_clean_output(again)


def _restarted_on_a_new_database(tmp_path: Path, w: Worker, src: Path) -> Worker:
    """``w`` (stopped) loses its database; a new mirrord starts on the same port."""
    shutil.rmtree(tmp_path / "mirrord")
    w2 = Worker(tmp_path / "mirrord", [src], port=w.port)
    w2.start()
    return w2


def test_new_mirrord_database_means_a_logged_full_resync(tmp_path: Path):
    """mirrord's database lost: SN is refused, fs_mirror says 'full resync', re-INITs, sweeps."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    (src / "b").write_bytes(b"b")
    for i in range(20):  # b is one entry of many: within init.max-delete
        (src / f"c{i}").write_bytes(b"c")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, backup)
        old_session = (backup / "sn").read_text().split(",")[0]
        w.stop()
        os.unlink(src / "b")  # unseen by any mirrord: only the sweep after INIT removes it
        w2 = _restarted_on_a_new_database(tmp_path, w, src)
        try:
            client.wait_line("full resync", 30)
            client.wait_line("init finished", 30, count=2)
            wait_converged(src, backup)
            assert (backup / "sn").read_text().split(",")[0] != old_session
        finally:
            w2.stop()
    finally:
        assert client.stop() == 0


def test_full_resync_that_would_wipe_the_mirror_stops_and_keeps_it(tmp_path: Path):
    """mirrord's database lost and its tree emptied: fs_mirror stops (exit 1), mirror kept."""
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    for i in range(30):
        (src / "data" / f"f{i}").write_bytes(b"precious")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, backup)
        w.stop()
        shutil.rmtree(src / "data")  # a wrong mount, an emptied disk: not a real shrink
        w2 = _restarted_on_a_new_database(tmp_path, w, src)
        try:
            assert client.popen.wait(60) == 1
            assert "would delete 31 of the" in client.output()
            assert len(list((mirror_of(backup, src) / "data").iterdir())) == 30
        finally:
            w2.stop()
    finally:
        client.kill()


def test_owner_mode_and_mtime_follow_the_worker(tmp_path: Path):
    """As root the mirror gets the worker's uid, gid, mode and mtime, at INIT and later."""
    if os.geteuid() != 0:
        pytest.skip("owners are only mirrored when fs_mirror runs as root (CI runs as root)")
    src = tmp_path / "src"
    src.mkdir()
    first = src / "first"
    first.write_bytes(b"1")
    os.chown(first, 1234, 5678)
    os.utime(first, (1_500_000_000, 1_500_000_000.25))
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    mirror = mirror_of(backup, src)
    try:
        client.wait_line("init finished", 30)
        later = src / "later"
        later.write_bytes(b"2")
        os.chmod(later, 0o640)
        os.chown(later, 4321, 8765)
        os.chown(first, 2222, 3333)

        def same(name: str) -> bool:
            a, b = os.lstat(src / name), os.lstat(mirror / name)
            return (a.st_uid, a.st_gid, a.st_mode) == (b.st_uid, b.st_gid, b.st_mode)

        wait_for(lambda: (mirror / "later").exists() and same("later") and same("first"), 20,
                 0.05, "owners and modes")  # fmt: skip
        wait_converged(src, backup)
        assert os.lstat(mirror / "first").st_mtime_ns == os.lstat(first).st_mtime_ns
    finally:
        assert client.stop() == 0
        w.stop()
