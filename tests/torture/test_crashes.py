"""SIGKILL of mirrord and of fs_mirror at seeded moments: the mirrors still converge.

Moments: during mirrord's boot init of a tree of a few thousand files,
during the clients' INIT streaming, and in the middle of live change (so
mid-transfer and mid-batch).  Each killed process is started again as a
user would.  mirrord's database always survives here, so every client that
had finished its first full sync resumes by SN and never does INIT again;
a reader of the mirrors never sees a sealed file cut short.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from tests.torture.harness import BACKENDS, Reader, Rig, replay_command, run_workload
from tests.torture.workload import Executor, Workload

CI_SEEDS = (11, 12)
CI_OPS = 1500
TREE_FILES = 3000


def _resume_problems(rig: Rig, started_after_init: dict[int, bool]) -> list[str]:
    """Every fs_mirror started after its backend's first full sync resumed by SN."""
    problems = []
    for backend, procs in rig.history.items():
        for i, proc in enumerate(procs):
            lines = list(proc.lines)
            if started_after_init[id(proc)]:
                bad = [line for line in lines if "full sync" in line]
            else:  # it may INIT, but never again once it has finished one
                done = next((n for n, line in enumerate(lines) if "init finished" in line), None)
                bad = [] if done is None else [line for line in lines[done:] if "full sync" in line]
            problems += [f"{backend} run {i}: INIT instead of SN: {line}" for line in bad]
    return problems


def test_kill_minus_nine_anywhere_converges(tmp_path: Path, seed: int, soak: float | None):
    """Seeded SIGKILLs of mirrord and each fs_mirror (boot, INIT, live): converge, SN resumes."""
    rng = random.Random(seed * 7919)
    rig = Rig(tmp_path, BACKENDS)
    after_init: dict[int, bool] = {}
    moments: list[str] = []
    pause = threading.Event()  # never set: wait() places a kill at a seeded moment

    def start_client(backend: str) -> None:
        proc = rig.start_client(backend)
        after_init[id(proc)] = backend in rig.initialized

    try:
        wl = Workload(seed, newline_names=False)  # ftp: no CR/LF names (contract 2.2)
        Executor(rig.base).apply_all(wl.populate(TREE_FILES))

        # 1. mirrord killed during its boot init (first boot, then a smooth boot)
        for _ in range(2):
            proc = rig.start_mirrord(wait=False)
            proc.wait_line("database", 60)
            pause.wait(rng.uniform(0.0, 0.4))
            moments.append(
                "mirrord boot" + (" (after it)" if proc.count("boot init finished") else "")
            )
            rig.kill_mirrord()
        rig.start_mirrord()

        # 2. clients and mirrord killed while INIT streams
        for b in BACKENDS:
            start_client(b)
        victim = rng.choice(BACKENDS)
        pause.wait(rng.uniform(0.05, 1.0))
        moments.append(
            f"fs_mirror-{victim} INIT"
            + (" (after it)" if rig.clients[victim].count("init finished") else "")
        )
        rig.kill_client(victim)
        start_client(victim)
        pause.wait(rng.uniform(0.05, 1.0))
        moments.append("mirrord during INIT")
        rig.kill_mirrord()
        rig.start_mirrord()
        for b in BACKENDS:
            rig.wait_init(b)

        # 3. live change, with kills at seeded operations
        reader = Reader([rig.datadir(b) for b in BACKENDS], seed)
        reader.start()
        n_ops = CI_OPS if soak is None else 10**9
        plan: dict[int, tuple[str, str]] = {}
        for _ in range(6 if soak is None else int(soak * 20)):
            at = rng.randrange(50, min(n_ops, CI_OPS * 40) - 200)
            target = rng.choice(("mirrord", *BACKENDS))
            plan[at] = ("kill", target)
            plan.setdefault(at + rng.randrange(20, 200), ("start", target))
        down: set[str] = set()
        count = 0

        def tick(_ex: Executor) -> None:
            nonlocal count
            count += 1
            what = plan.get(count)
            if what is None:
                return
            action, target = what
            if action == "kill" and target not in down:
                moments.append(f"{target} live at op {count}")
                rig.kill_mirrord() if target == "mirrord" else rig.kill_client(target)
                down.add(target)
            elif action == "start" and target in down:
                rig.start_mirrord(wait=False) if target == "mirrord" else start_client(target)
                down.discard(target)

        ex = run_workload(
            rig,
            wl,
            n_ops if soak is None else None,
            seconds=None if soak is None else soak * 60,
            on_tick=tick,
        )
        for target in sorted(down):
            rig.start_mirrord(wait=False) if target == "mirrord" else start_client(target)
        rig.worker.proc.wait_line("boot init finished", 120)
        left = rig.converge(timeout=30)
        reader.stop()
        rig.figures.seeds = {b: 1 for b in BACKENDS}
        rig.figures.records = rig.head()
        rig.figures.reads, rig.figures.sealed_reads = reader.reads, reader.sealed
        print(f"\nseed {seed}: {ex.summary()}\nkills: {moments}\n{rig.figures.line()}")
        replay = replay_command("tests/torture/test_crashes.py", seed)
        shown = "\n".join(f"{b}: {line}" for b, lines in left.items() for line in lines[:20])
        resumes = _resume_problems(rig, after_init)
        # one assertion naming every kind of failure, so a run reports them all
        assert not left and not resumes and not reader.bad, (
            f"after seed {seed} with kills {moments}:\n"
            f"differences:\n{shown}\nINIT where SN was due:\n"
            + "\n".join(resumes[:10])
            + f"\nhalf-written files seen: {reader.bad[:10]}\n"
            f"{rig.figures.line()}\nreplay: {replay}\n{rig.outputs()}"
        )
    finally:
        rig.stop()


def test_smooth_boot_sees_a_same_size_rewrite_with_restored_mtime(tmp_path: Path):
    """Rewritten while mirrord was down, same size, mtime put back: the smooth boot sends FWRITE.

    The reduced form of what seed 11 found: only the ctime tells the change.
    """
    from tests.daemons import Replay, Worker

    src = tmp_path / "src"
    src.mkdir()
    f = src / "x.y 1587"
    f.write_bytes(b"A" * 589)
    w = Worker(tmp_path / "dd", [src])
    w.start()
    try:
        first = Replay(w.client()).init()
        w.proc.kill()
        before = f.stat()
        f.write_bytes(b"B" * 589)
        os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
        w.start()
        again = Replay(w.client())
        assert again.resume(first.session, first.serial) == b"OK"
        again.drain(quiet=1.0)
        assert any(line.startswith(b"FWRITE:") for _, line in again.received), again.received
    finally:
        w.proc.kill()
