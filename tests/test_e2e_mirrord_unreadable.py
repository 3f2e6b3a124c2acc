"""A directory mirrord cannot read, with the real daemon run as an unprivileged user.

Contract section 5: such a directory is logged, counted in the status and
sent as ``CREATE`` with ``unreadable=1``; its entries are neither sent nor
deleted, and once it can be read its real contents arrive as records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrord.control import request
from protocol.records import Action, Record
from tests.daemons import (
    Replay,
    Worker,
    assert_clean_output,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for

NOBODY = 65534
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _why_not_as_nobody() -> str | None:
    """Why mirrord cannot run as nobody here, or None when it can."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv to run mirrord as an unprivileged user"
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", ""], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:  # e.g. a pyenv interpreter whose libpython is under /root
        return f"this Python cannot run as nobody: {probe.stderr.strip()[:200]}"
    return None


_WHY_NOT = _why_not_as_nobody()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


@pytest.fixture
def top() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="mirrord-unreadable-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(0o755)
        shutil.rmtree(path)


def status(worker: Worker) -> dict:
    """What ``mirrord -k status --json`` prints: the control socket's status reply."""
    reply = request(str(worker.datadir / "mirrord.sock"), "status")
    assert reply.get("ok"), reply
    return reply


def decoded(lines: list[bytes]) -> list[Record]:
    return [Record.decode(line) for line in lines]


@pytest.fixture
def locked_worker(top) -> Iterator[tuple[Worker, Path]]:
    """mirrord as nobody over ``src``, all of which nobody can read but ``src/locked``."""
    src = top / "src"
    (src / "open" / "sub").mkdir(parents=True)
    (src / "open" / "a.txt").write_bytes(b"a")
    (src / "locked" / "deep").mkdir(parents=True)
    (src / "locked" / "secret.txt").write_bytes(b"s")
    (src / "locked" / "deep" / "more.txt").write_bytes(b"m")
    data = top / "data"
    worker = Worker(data, [src], prefix=AS_NOBODY, options=["-o", "rescan.interval=0"])
    for path in [data, *data.rglob("*")]:
        os.chown(path, NOBODY, -1)
    (src / "locked").chmod(0o700)  # root's: nobody can neither list nor watch it
    proc = worker.start()
    try:
        yield worker, src
    finally:
        assert worker.stop() == 0
    assert_clean_output(proc)


def init(worker: Worker) -> tuple[Replay, list[Record]]:
    replay = Replay(worker.client())
    replay.start()
    replay.client.send(b"INIT")
    lines = replay.client.lines_until(b"EOF", timeout=60)
    replay.serial = int(lines[1].split(b":", 1)[1])
    return replay, decoded(lines[2:-1])


def test_unreadable_directory_is_sent_as_unreadable_and_read_once_readable(locked_worker):
    """mirrord as nobody: the directory it cannot read is CREATE unreadable=1 with nothing
    below and no DELETE, logged once; after chmod back, its entries arrive as records."""
    worker, src = locked_worker
    replay, records = init(worker)
    by_path = {r.path: r for r in records}
    locked = os.fsencode(src / "locked")
    assert by_path[locked].action is Action.CREATE
    assert by_path[locked].meta.unreadable, by_path[locked]
    assert not by_path[os.fsencode(src / "open")].meta.unreadable
    assert os.fsencode(src / "open" / "a.txt") in by_path
    assert not [p for p in by_path if p.startswith(locked + b"/")]
    assert not [r for r in records if r.action is Action.DELETE]
    assert worker.proc.count("cannot read") == 1, worker.proc.output()

    (src / "locked").chmod(0o755)  # IN_ATTRIB on it, seen through its parent's watch
    got: list[Record] = []

    def arrived() -> bool:
        if replay.pump(0.3):
            got.extend(decoded([line for _, line in replay.received[len(got) :]]))
        return os.fsencode(src / "locked" / "deep" / "more.txt") in {r.path for r in got}

    wait_for(arrived, 20, 0.0, "the locked directory's entries as records")
    assert os.fsencode(src / "locked" / "secret.txt") in {r.path for r in got}
    assert not [r for r in got if r.action is Action.DELETE], got
    replay.client.close()
    assert worker.proc.count("cannot read") == 1, worker.proc.output()


def test_status_counts_unreadable_directories(locked_worker):
    """``-k status --json`` has ``unreadable``: 1 while the directory cannot be read, then 0."""
    worker, src = locked_worker
    assert status(worker).get("unreadable") == 1
    (src / "locked").chmod(0o755)
    wait_for(lambda: status(worker).get("unreadable") == 0, 10, 0.05, "the count back to 0")


def test_a_full_resync_from_a_mirrord_that_cannot_read_a_directory_keeps_the_backup(top):
    """Issue 7 item 4 end to end: a mirror made by a root mirrord, then mirrord's database lost
    and the daemon run as a user who cannot read one directory: the full resync fs_mirror does
    keeps everything the mirror holds below that directory, and nothing else is lost."""
    src = top / "src"
    (src / "open").mkdir(parents=True)
    (src / "open" / "a.txt").write_bytes(b"a")
    (src / "locked" / "deep").mkdir(parents=True)
    for i in range(30):
        (src / "locked" / "deep" / f"f{i}").write_bytes(b"kept")
    data, backup = top / "data", top / "backup"
    root_worker = Worker(data, [src])
    root_worker.start()
    client = start_fs_mirror(root_worker, backup)
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, backup)
        assert root_worker.stop() == 0
        shutil.rmtree(data)  # the database is lost; the identity is made again below
        nobody_worker = Worker(data, [src], prefix=AS_NOBODY, port=root_worker.port)
        for path in [data, *data.rglob("*")]:
            os.chown(path, NOBODY, -1)
        (src / "locked").chmod(0o700)  # root's: nobody can neither list nor watch it
        nobody_worker.start()
        try:
            client.wait_line("init finished", 30, count=2)
            (src / "open" / "b.txt").write_bytes(b"after")
            wait_for(lambda: (mirror_of(backup, src) / "open" / "b.txt").exists(), 20,
                     message="a later change")  # fmt: skip
            kept = list((mirror_of(backup, src) / "locked" / "deep").iterdir())
            assert len(kept) == 30, client.output()
            assert "removed" not in client.output()  # the sweep deleted nothing
        finally:
            assert nobody_worker.stop() == 0
    finally:
        assert client.stop() == 0
