"""A backup host's life with real mirrords: two workers, kill -9 mid-fetch, daily rotation."""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    command,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for


def fs_mirror(worker: Worker, datadir: Path, *extra: str) -> Proc:
    return start_fs_mirror(worker, datadir, *extra)


def test_two_workers_into_one_backup_host(tmp_path: Path):
    """Two mirrords mirrored into /BACKUP/worker01 and /BACKUP/worker02 converge independently."""
    backup = tmp_path / "BACKUP"
    workers, clients, sources = [], [], []
    try:
        for name in ("worker01", "worker02"):
            src = tmp_path / name / "var" / "www"
            src.mkdir(parents=True)
            (src / "index.html").write_bytes(f"<h1>{name}</h1>".encode())
            w = Worker(tmp_path / name / "mirrord", [src])
            w.start()
            workers.append(w)
            sources.append(src)
            clients.append(fs_mirror(w, backup / name))
        for client in clients:
            client.wait_line("init finished", 30)
        (sources[0] / "only-on-01").write_bytes(b"one")
        (sources[1] / "sub").mkdir()
        (sources[1] / "sub" / "only-on-02").write_bytes(b"two")
        for src, name in zip(sources, ("worker01", "worker02"), strict=True):
            wait_converged(src, backup / name)
        workers[0].stop()  # one worker going away leaves the other mirror running
        (sources[1] / "after").write_bytes(b"still mirrored")
        wait_converged(sources[1], backup / "worker02")
        assert not (mirror_of(backup / "worker01", sources[0]) / "sub").exists()
        assert not (mirror_of(backup / "worker02", sources[1]) / "only-on-01").exists()
        sn1 = (backup / "worker01" / "sn").read_text().split(",")[0]
        sn2 = (backup / "worker02" / "sn").read_text().split(",")[0]
        assert sn1 != sn2  # two sessions, one per worker
    finally:
        for client in clients:
            assert client.stop() == 0
        for w in workers:
            if w.proc and w.proc.popen.poll() is None:
                w.stop()
    for client in clients:
        assert_clean_output(client)


SIZE = 2 * 1024 * 1024
COUNT = 50


def version(i: int, v: int) -> bytes:
    """File ``i``'s complete content in version ``v``."""
    return (f"file {i} version {v}|".encode() * (SIZE // 16 + 1))[:SIZE]


class Sampler(threading.Thread):
    """Reads mirror files over and over; records any content that is not a complete version."""

    def __init__(self, mirror: Path, allowed: dict[str, set[str]]) -> None:
        super().__init__(daemon=True)
        self.mirror, self.allowed = mirror, allowed
        self.stop_event = threading.Event()
        self.bad: list[str] = []
        self.reads = 0

    def run(self) -> None:
        names = sorted(self.allowed)
        while not self.stop_event.is_set():
            for name in names:
                try:
                    data = (self.mirror / name).read_bytes()
                except FileNotFoundError:
                    continue
                self.reads += 1
                digest = hashlib.sha256(data).hexdigest()
                if digest not in self.allowed[name]:
                    self.bad.append(f"{name}: {len(data)} bytes, not a complete version")
                if self.stop_event.is_set():
                    return


def test_kill_9_mid_fetch_never_shows_a_half_written_file(tmp_path: Path):
    """fs_mirror SIGKILLed fetching 50 x 2 MB: readers only ever see whole files; SN resume."""
    src = tmp_path / "src"
    src.mkdir()
    staging = tmp_path / "staging"  # the worker replaces files atomically too
    staging.mkdir()
    for i in range(COUNT):
        (src / f"big{i:02}").write_bytes(version(i, 0))
    allowed = {
        f"big{i:02}": {hashlib.sha256(version(i, v)).hexdigest() for v in (0, 1)}
        for i in range(COUNT)
    }
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    again: Proc | None = None
    mirror = mirror_of(backup, src)
    sampler = Sampler(mirror, allowed)
    try:
        client.wait_line("init finished", 30)
        inodes = {name: (mirror / name).stat().st_ino for name in allowed}
        sampler.start()
        for i in range(COUNT):
            (staging / f"big{i:02}").write_bytes(version(i, 1))
            os.replace(staging / f"big{i:02}", src / f"big{i:02}")

        def replaced() -> int:
            return sum((mirror / name).stat().st_ino != ino for name, ino in inodes.items())

        wait_for(replaced, 20, 0.002, "the first new file in the mirror")
        client.popen.send_signal(signal.SIGKILL)
        client.popen.wait(10)
        print(f"killed with {replaced()} of {COUNT} files replaced")
        again = fs_mirror(w, backup)
        wait_converged(src, backup, timeout=25)
        assert "init finished" not in again.output()
        assert again.count("resumed session") == 1
        leftovers = [p.name for p in mirror.iterdir() if not p.name.startswith("big")]
        assert leftovers == []
    finally:
        sampler.stop_event.set()
        sampler.join(10)
        if again is not None:
            assert again.stop() == 0
        client.kill()
        w.stop()
    assert sampler.reads > COUNT
    assert sampler.bad == []


def rotate_cmd(backup: Path, backdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            "rotate.host=worker01",
            "-o",
            "fssync.type=local",
            "-o",
            f"rotate.backdir={backdir}",
            f"--datadir={backup}",
            "--rotate",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_rotation_keeps_old_contents_and_prunes(tmp_path: Path):
    """--rotate makes backdir/HOST/DAY of hard links; later writes leave it alone; keep prunes."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_bytes(b"monday\n")
    (src / "etc" / "issue").write_bytes(b"stays\n")
    os.symlink("motd", src / "etc" / "motd.link")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    backdir = tmp_path / "daily"
    client = fs_mirror(w, backup)
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, backup)
        hostdir = backdir / "worker01"
        hostdir.mkdir(parents=True)
        today = datetime.date.today()
        old = [today - datetime.timedelta(days=n) for n in (1, 2, 5)]
        for day in old:
            (hostdir / day.isoformat() / "x").mkdir(parents=True)
        (hostdir / "not-a-date").mkdir()
        done = rotate_cmd(backup, backdir, "-o", "rotate.keep=3")  # while fs_mirror runs
        assert done.returncode == 0, done.stderr
        day = hostdir / today.isoformat()
        kept = sorted(p.name for p in hostdir.iterdir())
        assert kept == sorted([today.isoformat(), *(d.isoformat() for d in old[:2]), "not-a-date"])
        rotated = mirror_of(day, src)
        live = mirror_of(backup, src)
        assert (rotated / "etc" / "motd").stat().st_ino == (live / "etc" / "motd").stat().st_ino
        assert os.readlink(rotated / "etc" / "motd.link") == "motd"
        assert not (day / "sn").exists()

        (src / "etc" / "motd").write_bytes(b"tuesday\n")
        wait_converged(src, backup)
        assert (live / "etc" / "motd").read_bytes() == b"tuesday\n"
        assert (rotated / "etc" / "motd").read_bytes() == b"monday\n"
        assert (rotated / "etc" / "motd").stat().st_ino != (live / "etc" / "motd").stat().st_ino
        assert (rotated / "etc" / "issue").stat().st_ino == (live / "etc" / "issue").stat().st_ino
        os.chmod(src / "etc" / "issue", 0o600)  # metadata too: the backup keeps its own
        wait_converged(src, backup)
        assert (rotated / "etc" / "issue").stat().st_mode & 0o777 == 0o644
    finally:
        assert client.stop() == 0
        w.stop()


def test_rotation_into_the_mirror_is_a_config_error(tmp_path: Path):
    """rotate.backdir inside the mirror exits 2 naming rotate.backdir."""
    backup = tmp_path / "backup"
    backup.mkdir()
    done = rotate_cmd(backup, backup / "daily")
    assert done.returncode == 2
    assert "rotate.backdir" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_batches_wait_while_a_rotation_holds_the_mirror(tmp_path: Path):
    """While --rotate (here the test) holds the batch lock nothing is applied; then it is."""
    from fs_mirror.gate import BatchLock

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup)
    lock: BatchLock | None = None
    try:
        client.wait_line("init finished", 30)
        lock = BatchLock(os.fsencode(backup))
        lock.acquire()
        (src / "during-rotation").write_bytes(b"later")
        client.wait_line("waiting for a rotation of this mirror", 10)
        assert not (mirror_of(backup, src) / "during-rotation").exists()
        lock.close()
        lock = None
        wait_converged(src, backup)
    finally:
        if lock is not None:
            lock.close()
        assert client.stop() == 0
        w.stop()


def test_rotate_before_any_full_sync_exits_1(tmp_path: Path):
    """--rotate on a datadir without sn (no finished INIT) exits 1 saying to wait for it."""
    backup = tmp_path / "backup"
    backup.mkdir()
    done = rotate_cmd(backup, tmp_path / "daily")
    assert done.returncode == 1
    assert "init finished" in done.stderr
    assert not (tmp_path / "daily" / "worker01").exists()
