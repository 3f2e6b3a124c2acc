"""Random change against a live mirrord: every backend's mirror equals the worker after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons import assert_clean_output
from tests.torture.harness import Reader, Rig, replay_command, run_workload
from tests.torture.workload import Workload

CI_OPS = 1000  # about 5 s of change at the seeded pace

#: CI seeds that still find a mirrord bug not fixed yet, seen in some runs
#: only (timing).  Each stays in CI, reported as XFAIL or XPASS, never hidden;
#: an explicit --seed runs it as a plain test.  Remove an entry with its fix.
KNOWN_OPEN: dict[tuple[int, str], str] = {}  # (seed, backend) -> why it is expected to fail


def test_random_change_converges(
    request: pytest.FixtureRequest, tmp_path: Path, seed: int, backend: str, soak: float | None
):
    """A seeded mix of every kind of change on the worker: the mirror equals it within 10 s.

    The mirror holds root's tree (paths, types, contents, symlink targets, mode
    bits) without the excluded sub-tree and without anything moved out; a
    reader of the mirror never finds a sealed file cut short.
    """
    known = KNOWN_OPEN.get((seed, backend))
    if known and not request.config.getoption("seed"):
        request.applymarker(pytest.mark.xfail(reason=known, strict=False))
    rig = Rig(tmp_path, (backend,))
    try:
        rig.start()
        reader = Reader([rig.datadir(backend)], seed)
        reader.start()
        wl = Workload(seed, newline_names=backend != "ftp")
        if soak is None:
            ex = run_workload(rig, wl, CI_OPS)
        else:
            ex = run_workload(rig, wl, None, seconds=soak * 60)
        left = rig.converge()
        reader.stop()
        rig.figures.seeds[backend] = 1
        rig.figures.records = rig.head()
        rig.figures.reads, rig.figures.sealed_reads = reader.reads, reader.sealed
        print(f"\nseed {seed} backend {backend}: {ex.summary()}\n{rig.figures.line()}")
        replay = replay_command("tests/torture/test_random_change.py", seed, backend)
        assert not left, (
            f"{backend} mirror differs after seed {seed} ({len(left[backend])} differences):\n"
            + "\n".join(left[backend][:20])
            + f"\n{rig.figures.line()}\nreplay: {replay}\n{rig.outputs()}"
        )
        assert not reader.bad, f"half-written files seen: {reader.bad[:10]}\nreplay: {replay}"
        for proc in rig.mirrord_history + rig.history[backend]:
            assert_clean_output(proc)
    finally:
        rig.stop()
