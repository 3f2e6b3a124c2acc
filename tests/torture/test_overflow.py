"""A burst that overflows mirrord's inotify queue: mirrord says so, and the mirrors converge.

mirrord is stopped (SIGSTOP) while the burst is made, so the kernel's queue
(``/proc/sys/fs/inotify/max_queued_events``, read here, left as it is: the
machine is shared) fills past its limit for certain; then it continues
(SIGCONT) with random change on top.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.torture.harness import Rig, replay_command, run_workload
from tests.torture.workload import Executor, Mkdir, Workload, Write

CI_SEEDS = (21,)
BACKENDS = ("local", "rsync")


def test_queue_overflow_converges(tmp_path: Path, seed: int):
    """More events than the kernel queues while mirrord is stopped: overflow logged, converged."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    rig = Rig(tmp_path, BACKENDS)
    try:
        rig.start()
        mirrord = rig.worker.proc
        assert mirrord is not None
        ex = Executor(rig.base)
        # each written file is IN_CREATE + IN_CLOSE_WRITE in the watched root: 2 events
        dirs = [f"root/burst{i}" for i in range(4)]
        burst = [Mkdir(d) for d in dirs] + [
            Write(f"{dirs[i % 4]}/f{i}", b"%d\n" % i) for i in range(limit // 2 + 2000)
        ]
        mirrord.signal(signal.SIGSTOP)
        try:
            ex.apply_all(burst)
        finally:
            mirrord.signal(signal.SIGCONT)
        mirrord.wait_line("overflow", 30)
        run_workload(rig, Workload(seed, newline_names=True), 500)
        rig.figures.ops += len(burst)
        left = rig.converge(timeout=30)
        rig.figures.seeds = {b: 1 for b in BACKENDS}
        rig.figures.records = rig.head()
        print(f"\nburst of {len(burst)} ops past a queue of {limit}\n{rig.figures.line()}")
        shown = "\n".join(f"{b}: {line}" for b, lines in left.items() for line in lines[:20])
        assert not left, (
            f"mirrors differ after an overflow:\n{shown}\n{rig.figures.line()}\n"
            f"replay: {replay_command('tests/torture/test_overflow.py', seed)}\n{rig.outputs()}"
        )
    finally:
        rig.stop()
