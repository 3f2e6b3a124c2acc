"""The backup host's disk fills up under fs_mirror, and is given room again.

fs_mirror's datadir lives on a 4 MiB tmpfs; the worker then gets more than
fits. Contract section 5: only the local disk being unwritable stops
fs_mirror advancing its serial, and it says so and retries until it can.
So while the disk is full the serial in DATADIR/sn never passes a record
that is not applied, no file in the mirror is half written (every content is
self-checking, and must be one the worker wrote), and once the tmpfs is
grown the same fs_mirror process completes and converges.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.records import Action, Record
from tests.daemons import (
    Replay,
    Worker,
    assert_clean_output,
    mirror_of,
    stamp_intact,
    stamped,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for

FULL = re.compile(r"(?i)no space left|disk (is )?full|ENOSPC")
FILES, SIZE = 40, 200 * 1024  # 8 MB onto a 4 MiB file system
OVERWRITTEN = 10  # the first ten are then rewritten, bigger


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"mount {' '.join(args)}: {done.stderr}"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs of our own, unmounted however the test ends."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the torture suite as root)")
    if shutil.which("mount") is None:
        pytest.skip("the mount command is missing")
    top = tmp_path / "backupfs"
    top.mkdir(mode=0o700)
    mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(top))
    try:
        yield top
    finally:
        done = subprocess.run(["umount", str(top)], capture_output=True, timeout=20)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(top)], capture_output=True, timeout=20)


def sn(datadir: Path) -> tuple[str, int] | None:
    try:
        session, serial = (datadir / "sn").read_text().strip().split(",")
    except (FileNotFoundError, ValueError):
        return None
    return session, int(serial)


def test_full_disk_holds_serial_corrupts_nothing_and_completes(small_disk: Path, tmp_path: Path):
    """A full mirror disk is said in the log; the sn serial never passes an unapplied record;
    every mirrored file is whole and one the worker wrote; growing the disk lets the same
    fs_mirror complete and converge without a restart."""
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    (src / "small.txt").write_bytes(stamped(b"before the flood"))
    worker = Worker(tmp_path / "w", [src])
    worker.start()
    datadir = small_disk / "mirror"
    client = start_fs_mirror(worker, datadir)
    # A protocol client of our own records which serial each record got.
    replay = Replay(worker.client()).init()
    written: dict[bytes, set[bytes]] = {}  # mirror-relative path -> sha256 of every content
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, datadir)
        pid = client.popen.pid

        def write(name: str, size: int, salt: bytes) -> None:
            body = (salt + name.encode()) * (size // (len(salt) + len(name)) + 1)
            data = stamped(body[:size])
            (src / "big" / name).write_bytes(data)
            key = os.fsencode(src / "big" / name)
            written.setdefault(key, set()).add(hashlib.sha256(data).digest())

        for n in range(FILES):
            write(f"f{n:03d}", SIZE, b"first")
        for n in range(OVERWRITTEN):
            write(f"f{n:03d}", SIZE + 4096, b"second")
        head_path = os.fsencode(src / "big" / f"f{OVERWRITTEN - 1:03d}")
        replay.drain(quiet=0.5, timeout=30)
        fwrites = [(s, Record.decode(line).path) for s, line in replay.received
                   if Record.decode(line).action is Action.FWRITE]  # fmt: skip
        assert any(p == head_path for _, p in fwrites), "the worker logged the overwrites"
        last = {p: s for s, p in fwrites}  # each path's last FWRITE serial
        final = {p: hashlib.sha256((src / "big" / os.path.basename(os.fsdecode(p))).read_bytes())
                 .digest() for p in last}  # fmt: skip

        wait_for(
            lambda: FULL.search(client.output()), 60, 0.05, "fs_mirror saying the disk is full"
        )
        full_lines = [line for line in client.output().splitlines() if FULL.search(line)]
        print("\nfull-disk line:", full_lines[0])

        def check_while_full() -> list[str]:
            """What is wrong with the mirror now: sn past an unapplied FWRITE, torn files."""
            state = sn(datadir)
            problems = []
            serial = state[1] if state else 0
            top = mirror_of(datadir, src)
            for s, path in fwrites:
                if s > serial:
                    continue
                local = datadir / os.fsdecode(path).lstrip("/")
                if not local.exists():  # no later record removes any of these files
                    problems.append(f"sn at {serial} but FWRITE {s} {path!r} is not applied")
                elif s == last[path] and hashlib.sha256(local.read_bytes()).digest() != final[path]:
                    problems.append(f"sn at {serial} past the last FWRITE {s} of {path!r}, "
                                    "but the mirror has an older content")  # fmt: skip
            for f in (top / "big").glob("*") if (top / "big").exists() else ():
                data = f.read_bytes()
                if not stamp_intact(data):
                    problems.append(f"torn file in the mirror: {f} ({len(data)} bytes)")
                elif hashlib.sha256(data).digest() not in written.get(os.fsencode(
                        src / "big" / f.name), set()):  # fmt: skip
                    problems.append(f"content the worker never wrote: {f}")
            return problems

        def reports() -> int:
            return sum(bool(FULL.search(line)) for line in client.output().splitlines())

        # Sample at the first report and at each of the next two (each retry says so).
        samples = []
        for _ in range(3):
            problems = check_while_full()
            assert not problems, "\n".join(problems[:20])
            samples.append(sn(datadir))
            before = reports()
            wait_for(lambda b=before: reports() > b, 60, 0.05, "fs_mirror retrying, saying so")
        head = replay.serial
        held = sn(datadir)
        print(f"sn while full: {samples} (worker head {head})")
        assert held is not None and held[1] < head, f"sn {held} reached head {head} while full"
        assert client.popen.poll() is None, "fs_mirror exited on a full disk:\n" + client.output()

        mount("-o", "remount,size=64m", str(small_disk))
        wait_converged(src, datadir, 60)
        wait_for(lambda: (sn(datadir) or ("", 0))[1] == head, 30, 0.05, f"sn at head {head}")
        assert client.popen.pid == pid and client.popen.poll() is None
        assert client.count("full sync:") == 1, client.output()[-4000:]
        for f in (mirror_of(datadir, src) / "big").glob("*"):
            assert stamp_intact(f.read_bytes()), f
        assert_clean_output(client)
        print("differences found: 0")
    finally:
        replay.client.close()
        print("--- fs_mirror (tail) ---\n" + "\n".join(client.lines[-25:]))
        client.stop()
        worker.stop()
