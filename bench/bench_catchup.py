"""fs_mirror catch-up after a stop: records per second when nothing needs a transfer.

    .venv/bin/python bench/bench_catchup.py [CHANGES] [EMPTY]

The issue's target: fs_mirror stopped while 100,000 changes happen
(creates, deletes, renames), then started: at least 20,000 records/s for
records that need no transfer, and no INIT.

It builds a tree, runs mirrord on it and fs_mirror (local backend, as
bench_mirror.py does) until fs_mirror has saved its first serial, then
stops fs_mirror with SIGTERM and makes about CHANGES changes (default
100000) that need no file content: mkdir, rmdir, symlink and unlink of
symlinks, renames of files (in place and across directories) and of
directories, deletes of files, chmod of files.  A last mkdir is the
sentinel: a protocol client resumes at fs_mirror's serial and reads the
log until it sees that CREATE, so mirrord's head has taken every change.
Then fs_mirror starts again and the time from its start until its
``DATADIR/sn`` reaches that head is the catch-up.  It prints records,
seconds, records/s; ``connected`` (seconds from the start until fs_mirror
logs its resumed session: interpreter, imports, connect) and ``after`` (the
records/s from then on, which leaves that fixed cost out); the CPU
seconds of both daemons (from the start until sn reached the head) and
``rec/cpu s``, the records per CPU second fs_mirror spent after it
connected: on a machine busy with other work the wall-clock figures
include time spent waiting for a core, this one does not; whether
fs_mirror resumed (no INIT: its log says "resumed session", an INIT says
"full sync"), and whether the mirror equals the source (names, types,
modes, symlink targets).

A new empty file is an FWRITE that fs_mirror still hands to the backend
(fs_mirror.apply makes no exception for size 0), so those are a second,
separate round: EMPTY empty files (default CHANGES/10, 0 skips it) made
while fs_mirror is stopped again, timed the same way.

BENCH_PROFILE=FILE runs the fs_mirror of the first round under cProfile
and writes its stats to FILE (``python -m pstats FILE``); the profiler
slows it, so its figure is not the real rate.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, Daemon, free_port, fs_info, make_tree, mirrord  # noqa: E402

#: Changes made per round of ``change_round``, and what each round consumes.
PER_ROUND = 10
FILES_PER_ROUND = 5  # renamed, renamed across, deleted, chmod'ed twice


def fs_mirror(port: int, datadir: Path, profile: str | None = None) -> Daemon:
    argv = [
        str(BIN / "fs_mirror"),
        "-o",
        "host=127.0.0.1",
        "-o",
        f"port={port}",
        f"--datadir={datadir}",
        "-o",
        "fssync.type=local",
    ]
    if profile:
        argv = [sys.executable, "-m", "cProfile", "-o", profile, *argv]
    return Daemon(argv)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (children not included)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_sn(datadir: Path) -> tuple[str, int] | None:
    try:
        session, serial = (datadir / "sn").read_text().strip().split(",")
    except (FileNotFoundError, ValueError):
        return None  # not written yet, or caught between two writes
    return session, int(serial)


def wait_sn(datadir: Path, serial: int, timeout: float) -> float:
    """Poll ``DATADIR/sn`` until it holds ``serial`` or more; seconds it took."""
    t0 = time.monotonic()
    while True:
        sn = read_sn(datadir)
        if sn is not None and sn[1] >= serial:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"sn at {sn}, waiting for serial {serial}")
        time.sleep(0.005)


def status(datadir: Path) -> dict:
    out = subprocess.run(
        [str(BIN / "mirrord"), "-o", f"datadir={datadir}", "-k", "status", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def wait_logged(
    port: int, session: str, serial: int, path: Path, timeout: float
) -> tuple[int, Counter[str]]:
    """Read mirrord's log from ``serial`` until the CREATE of ``path``.

    Returns the serial it is at and how many records of each action it read.
    """
    needle = b"CREATE:" + os.fsencode(path)
    actions: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(timeout)
        lines = sock.makefile("rb")

        def send(line: str) -> bytes:
            sock.sendall(line.encode() + b"\n")
            return lines.readline().rstrip(b"\r\n")

        if send("START") != b"OK" or send(f"SN:{session},{serial}") != b"OK":
            raise RuntimeError("mirrord refused to resume the bench's reader")
        while time.monotonic() < deadline:
            head, found = send("NEXT"), False
            for raw in lines:
                line = raw.rstrip(b"\r\n")
                if line == b"EOF":
                    break
                found = found or line.split(b"\t")[0] == needle
                actions[line.partition(b":")[0].decode()] += 1
            if found:
                return int(head.partition(b":")[2]), actions
    raise TimeoutError(f"no CREATE of {path} in mirrord's log")


def prepare(tree: Path, rounds: int) -> None:
    """What the changes remove or rename, beside make_tree's files: one of each per round.

    Everything removed exists before mirrord boots: a directory made and
    removed while mirrord is still behind on its events leaves no record at
    all (it is gone when mirrord looks), so the records would be fewer than
    the changes.
    """
    for name in ("new", "links", "across", "old", "oldlinks", "pool"):
        (tree / name).mkdir()
    for i in range(rounds):
        (tree / "old" / f"o{i}").mkdir()
        os.symlink(f"old-{i}", tree / "oldlinks" / f"l{i}")
        (tree / "pool" / f"r{i}").mkdir()
        (tree / "pool" / f"r{i}" / "a").touch()


def files_of(tree: Path) -> Iterator[Path]:
    """make_tree's files, in the order it made them."""
    for t in sorted(tree.glob("t[0-9]*")):
        for d in sorted(t.iterdir()):
            yield from sorted(d.iterdir())


def change_round(tree: Path, i: int, files: Iterator[Path]) -> None:
    """Ten changes to ten different paths, none of which needs file content in the mirror."""
    (tree / "new" / f"n{i}").mkdir()
    (tree / "old" / f"o{i}").rmdir()
    os.symlink(f"target-{i}", tree / "links" / f"l{i}")
    os.unlink(tree / "oldlinks" / f"l{i}")
    moved, across, deleted, modded, modded2 = itertools.islice(files, FILES_PER_ROUND)
    moved.rename(moved.with_name(moved.name + ".mv"))
    across.rename(tree / "across" / f"{across.parent.name}-{across.name}")
    (tree / "pool" / f"r{i}").rename(tree / "pool" / f"r{i}.mv")
    deleted.unlink()
    modded.chmod(0o600)
    modded2.chmod(0o640)


Entry = tuple[tuple[str, ...], str, int, str]


def entries(root: Path, rel: tuple[str, ...] = ()) -> Iterator[Entry]:
    """(path components, type, mode bits, symlink target) below ``root``, depth first, sorted.

    Components compare in the same order the walk yields them, so two walks
    merge like sorted lists.
    """
    here = root.joinpath(*rel)
    with os.scandir(here) as it:
        names = sorted(e.name for e in it)
    for name in names:
        st = os.lstat(here / name)
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
        target = os.readlink(here / name) if kind == "l" else ""
        yield (*rel, name), kind, stat.S_IMODE(st.st_mode), target
        if kind == "d":
            yield from entries(root, (*rel, name))


def compare(source: Path, mirror: Path) -> str:
    """'equal', or how many entries differ with the first few."""
    diffs = []
    count = 0
    src, dst = entries(source), entries(mirror)
    a, b = next(src, None), next(dst, None)
    while a is not None or b is not None:
        if a == b:
            a, b = next(src, None), next(dst, None)
            continue
        count += 1
        if b is None or (a is not None and a[0] < b[0]):
            diffs.append(f"only in source: {a}")
            a = next(src, None)
        elif a is None or b[0] < a[0]:
            diffs.append(f"only in mirror: {b}")
            b = next(dst, None)
        else:
            diffs.append(f"source {a} mirror {b}")
            a, b = next(src, None), next(dst, None)
    if not count:
        return "equal"
    return f"{count} entries differ, first: " + "; ".join(diffs[:5])


def records_per(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("inf")


def catch_up(
    label: str, port: int, worker: Daemon, mirror_dir: Path, head: int, profile: str | None
) -> None:
    """Start fs_mirror and time it until its sn holds ``head``."""
    before = read_sn(mirror_dir)
    assert before is not None
    worker_cpu = cpu_seconds(worker.proc.pid)
    t0 = time.monotonic()
    client = fs_mirror(port, mirror_dir, profile)
    client.wait_for("session ")  # 'resumed session ...' or 'full sync: session ...'
    connected = time.monotonic() - t0
    startup_cpu = cpu_seconds(client.proc.pid)
    took = connected + wait_sn(mirror_dir, head, timeout=3600)
    client_cpu = cpu_seconds(client.proc.pid)
    per_cpu = records_per(head - before[1], client_cpu - startup_cpu)
    worker_cpu = cpu_seconds(worker.proc.pid) - worker_cpu
    client.stop()
    records = head - before[1]
    joined = "\n".join(client.lines)
    if "full sync" in joined:
        mode = "INIT (full sync)"
    elif "resumed session" in joined:
        mode = "resumed, no INIT"
    else:
        mode = "neither 'resumed session' nor 'full sync' logged"
    print(
        f"{label:>10} {records:>8} {took:>8.2f} {records / took:>9.0f}"
        f" {connected:>9.2f} {records_per(records, took - connected):>9.0f}"
        f" {client_cpu:>10.1f} {per_cpu:>9.0f} {worker_cpu:>11.1f}  {mode}",
        flush=True,
    )


def main(changes: int, empty: int) -> None:
    rounds = max(1, changes // PER_ROUND)
    profile = os.environ.get("BENCH_PROFILE")
    top = Path(tempfile.mkdtemp(prefix="bench-catchup-", dir="/var/tmp"))
    try:
        tree = top / "tree"
        t0 = time.monotonic()
        made, dirs = make_tree(tree, rounds * FILES_PER_ROUND)
        prepare(tree, rounds)
        print(
            f"# tree: {made} files in {dirs} dirs, plus {rounds} each of dirs to rename,"
            " of dirs and of symlinks to remove,"
            f" made in {time.monotonic() - t0:.1f}s",
            flush=True,
        )
        fs_info(top / "data", "-a", f"t:{tree}")
        port = free_port()
        worker = mirrord(top / "data", port)
        worker.wait_for("boot init finished")
        mirror_dir = top / "mirror"
        client = fs_mirror(port, mirror_dir)
        took = client.wait_for("init finished")
        wait_sn(mirror_dir, status(top / "data")["head"], timeout=600)
        client.stop()
        print(f"# first INIT {took:.1f}s; fs_mirror stopped", flush=True)
        mirror = mirror_dir / str(tree).lstrip("/")
        print(
            f"{'round':>10} {'records':>8} {'seconds':>8} {'records/s':>9}"
            f" {'connected':>9} {'after':>9} {'cpu client':>10} {'rec/cpu s':>9}"
            f" {'cpu mirrord':>11}",
            flush=True,
        )

        t0 = time.monotonic()
        files = files_of(tree)
        for i in range(rounds):
            change_round(tree, i, files)
        sn = read_sn(mirror_dir)
        assert sn is not None
        (tree / "sentinel-1").mkdir()
        head, actions = wait_logged(port, sn[0], sn[1], tree / "sentinel-1", timeout=600)
        head = max(head, status(top / "data")["head"])
        print(
            f"# {rounds * PER_ROUND} changes made in {time.monotonic() - t0:.1f}s;"
            f" mirrord head {head} ({head - sn[1]} records: {dict(actions)}), overflows so far"
            f" {status(top / 'data').get('overflows')}",
            flush=True,
        )
        catch_up("no fetch", port, worker, mirror_dir, head, profile)
        print(f"# mirror vs source: {compare(tree, mirror)}", flush=True)

        if empty:
            t0 = time.monotonic()
            for i in range(empty):
                if i % 1000 == 0:
                    (tree / "empty" / f"e{i // 1000}").mkdir(parents=True)
                (tree / "empty" / f"e{i // 1000}" / f"f{i}").touch()
            sn = read_sn(mirror_dir)
            assert sn is not None
            (tree / "sentinel-2").mkdir()
            head, actions = wait_logged(port, sn[0], sn[1], tree / "sentinel-2", timeout=600)
            head = max(head, status(top / "data")["head"])
            print(
                f"# {empty} empty files made in {time.monotonic() - t0:.1f}s;"
                f" mirrord head {head} ({head - sn[1]} records: {dict(actions)})",
                flush=True,
            )
            catch_up("empty new", port, worker, mirror_dir, head, None)
            print(f"# mirror vs source: {compare(tree, mirror)}", flush=True)
        worker.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    n = int(a[0]) if a else 100_000
    main(n, int(a[1]) if len(a) > 1 else n // 10)
