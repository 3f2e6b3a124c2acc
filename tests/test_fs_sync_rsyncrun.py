"""One rsync client process (fs_sync/rsyncrun.py), driven by small `sh` stand-ins.

The stand-ins play rsync's side of the pipes: read the names, print a
summary or an error, then linger or exit. The real rsync runs in
tests/test_fs_sync_rsync_runs.py.
"""

from __future__ import annotations

import os
import time

from fs_sync.rsyncrun import RsyncRun, summary_done

SUMMARY = (
    b"\nNumber of files: 1 (reg: 1)\nLiteral data: 1,024 bytes\n"
    b"sent 63 bytes  received 93 bytes  312.00 bytes/sec\n"
    b"total size is 1,024  speedup is 6.56\n"
)


def _run(script: str, tmp: bytes = b"/nonexistent") -> RsyncRun:
    return RsyncRun(["sh", "-c", script], dict(os.environ), tmp, "key", stderr_keep=1 << 20)


def test_summary_done_only_once_its_last_line_is_whole() -> None:
    """Each prefix of the stats output is unfinished until the final newline arrives."""
    for cut in range(len(SUMMARY)):
        assert not summary_done(SUMMARY[:cut]), SUMMARY[:cut]
    assert summary_done(SUMMARY)
    assert summary_done(b"total size is 0  speedup is 0.00\n")


def test_summary_done_wants_the_words_at_a_line_start() -> None:
    """The marker in the middle of a line, or a line that merely starts alike, is not it."""
    assert not summary_done(b"sent total size is 3\n")
    assert not summary_done(b"Total size is 3\n")
    assert summary_done(b"x\ntotal size is 3  speedup is 1.00\n(DRY RUN)\n")


def test_complete_returns_at_the_summary_without_waiting_for_the_exit() -> None:
    """rsync lingering after its summary does not hold the run: the code is not known yet."""
    run = _run("cat >/dev/null; echo 'total size is 3  speedup is 1.00'; exec sleep 30")
    started = time.monotonic()
    done = run.complete(b"a\0b\0", bound=30)
    assert time.monotonic() - started < 10
    assert done.code is None
    assert done.stdout.endswith(b"speedup is 1.00\n")
    assert run.alive()
    assert run.finish(0.05) == -9  # killed after the bound, and reaped
    assert not run.alive()


def test_complete_keeps_what_came_on_stderr_before_the_summary() -> None:
    """Complaints printed before the summary are in the result, whatever the timing."""
    run = _run("cat >/dev/null; echo 'file has vanished: \"x\"' >&2; echo 'total size is 0  s'")
    done = run.complete(b"x\0", bound=30)
    assert b"file has vanished" in done.stderr
    run.finish(30)


def test_complete_reads_a_failed_run_to_its_exit() -> None:
    """Without a summary the exit code and stderr come back, the process reaped."""
    run = _run("cat >/dev/null; echo '@ERROR: Unknown module' >&2; exit 5")
    done = run.complete(b"a\0", bound=30)
    assert (done.code, done.stderr) == (5, b"@ERROR: Unknown module\n")
    assert not run.alive()


def test_complete_writes_and_reads_at_once() -> None:
    """A list bigger than a pipe while rsync fills stderr first: no deadlock."""
    script = "head -c 300000 /dev/zero >&2; wc -c; echo 'total size is 0  s'"
    done = _run(script).complete(b"n" * 1_000_000, bound=30)
    assert done.stdout.split()[0] == b"1000000"
    assert len(done.stderr) == 300000


def test_complete_survives_rsync_gone_before_the_list() -> None:
    """rsync exits without reading stdin (EPIPE on our side): its exit is the answer."""
    done = _run("exit 10").complete(b"n" * 1_000_000, bound=30)
    assert done.code == 10


def test_retire_ends_a_waiting_run_cleanly() -> None:
    """A standby given an empty list exits by itself (rsync's empty-list path)."""
    run = _run("cat >/dev/null; echo 'total size is 0  speedup is 0.00'")
    assert run.retire(30) == 0


def test_retire_kills_a_run_that_does_not_end() -> None:
    """A standby that ignores the end of its list is killed after the bound and reaped."""
    run = _run("exec sleep 30")
    started = time.monotonic()
    assert run.retire(0.2) == -9
    assert time.monotonic() - started < 10
