"""One rsync client process, started before its file list is known.

`RsyncRun` starts rsync with `--files-from=- --from0` and leaves its stdin
open. rsync connects, passes the daemon's greeting, authenticates, sends its
arguments and filter list, then waits for names (main.c `client_run` reaches
`start_filesfrom_forwarding` before reading stdin). A run started ahead of
need thus takes the connection, the daemon's fork and rsync's own start off
the path of the next change. While it waits, each side's keepalives (every
half `--timeout`) keep the daemon's `timeout` from ending it.

`complete()` writes the names, closes stdin and reads stdout and stderr
together (no pipe can fill while another is written) until rsync prints the
last line of its `--stats` summary. That line comes from the receiver once
every file is in place; the other rsync process then sleeps in 20 ms steps
(main.c `wait_process_with_flush`) before it exits, so waiting for the exit
costs ~20 ms per run for nothing. A run that ends without a summary (a
whole-run failure) is read to its exit and its exit code reported.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from fs_sync.rsyncwatch import StagedWatch

__all__ = ["SUMMARY_END", "Finished", "RsyncRun", "summary_done"]

#: the start of the last line of rsync's summary (`total size is N  speedup is X`)
SUMMARY_END = b"total size is "
_STDOUT_KEEP = 64 * 1024  # the summary is ~20 short lines
_READ = 64 * 1024


def summary_done(stdout: bytes) -> bool:
    """Whether `stdout` holds the whole last line of rsync's summary."""
    text = b"\n" + stdout
    start = text.rfind(b"\n" + SUMMARY_END)
    return start >= 0 and b"\n" in text[start + 1 :]


@dataclass(frozen=True)
class Finished:
    """What one run said. `code` is None when it was read only to its summary
    (`summary` true) or only until its every file was staged (`summary` false).
    """

    code: int | None
    stdout: bytes
    stderr: bytes
    summary: bool = True


class RsyncRun:
    """An rsync client process with its own staging directory.

    `key` says which runs it can serve (module and basis directory).
    Raises OSError when rsync cannot be started.
    """

    def __init__(
        self,
        argv: Sequence[bytes | str],
        env: dict[str, str],
        staging: bytes,
        key: object,
        *,
        stderr_keep: int,
    ) -> None:
        self.staging, self.key, self._keep = staging, key, stderr_keep
        self.late_stdout = b""
        self.settled = threading.Event()  # set once the batch is done with the staged files
        self.reaper: threading.Thread | None = None  # reaps a run ended before its exit
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def complete(
        self,
        listing: bytes,
        bound: float,
        watch: StagedWatch | None = None,
        on_staged: Callable[[list[bytes]], None] | None = None,
    ) -> Finished:
        """Give rsync its names and read it until its summary or its exit.

        No time limit of ours: a big file may pass in silence for minutes,
        and rsync's --timeout ends a stalled connection. `bound` is how long
        a process whose pipes have closed may take to exit before it is
        killed. With `watch`, the run is done as soon as every name is
        staged, and `on_staged` is told the names staged as they come (while
        rsync goes on with the others). After an early finish the process is
        still exiting: `finish()` reaps it.
        """
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out, err = bytearray(), bytearray()
        with selectors.DefaultSelector() as sel:
            pending = memoryview(listing)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
            if pending:
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            if watch is not None:
                sel.register(watch, selectors.EVENT_READ)
            readers = 2
            while readers:
                for key, _ in sel.select():
                    if key.fileobj is proc.stdin:
                        pending = self._write(sel, pending)
                        continue
                    if key.fileobj is watch:
                        staged = watch.read()
                        if on_staged is not None:
                            on_staged(watch.take_arrived())
                        if staged and not pending:
                            _drain(proc.stderr, err)
                            return Finished(None, bytes(out), bytes(err[-self._keep :]), False)
                        if watch.broken:
                            sel.unregister(watch)
                        continue
                    buffer: bytearray = key.data
                    data = os.read(key.fd, _READ)
                    if not data:
                        sel.unregister(key.fileobj)
                        readers -= 1
                        continue
                    buffer += data
                    if buffer is err and len(err) > 2 * self._keep:
                        del err[: -self._keep]
                    if buffer is out and len(out) > 2 * _STDOUT_KEEP:
                        del out[:-_STDOUT_KEEP]
                if summary_done(bytes(out[-_STDOUT_KEEP:])):
                    _drain(proc.stderr, err)
                    return Finished(None, bytes(out), bytes(err[-self._keep :]))
        code = self.finish(bound)
        return Finished(code, bytes(out), bytes(err[-self._keep :]))

    def _write(self, sel: selectors.BaseSelector, pending: memoryview) -> memoryview:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            pending = pending[os.write(stdin.fileno(), pending) :]
        except BlockingIOError:
            return pending
        except OSError:  # rsync is gone (EPIPE): its exit code says why
            pending = pending[:0]
        if not pending:
            sel.unregister(stdin)
            with contextlib.suppress(OSError):
                stdin.close()
        return pending

    def finish(self, bound: float) -> int:
        """Wait up to `bound` seconds for the exit, then kill; always reaps.

        What rsync wrote to stdout meanwhile (its summary) is kept in
        `late_stdout`.
        """
        try:
            code = self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        late = bytearray()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                os.set_blocking(pipe.fileno(), False)
                _drain(pipe, late if pipe is self.proc.stdout else bytearray())
        self.late_stdout = bytes(late[-_STDOUT_KEEP:])
        self._close_pipes()
        return code

    def retire(self, bound: float) -> int:
        """End a run never given names: an empty list makes rsync exit cleanly."""
        stdin = self.proc.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        deadline = time.monotonic() + bound
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), True)
                _read_to_end(pipe, deadline)
        return self.finish(max(0.0, deadline - time.monotonic()))

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _drain(pipe: IO[bytes], into: bytearray) -> None:
    """Append what `pipe` (non-blocking) holds now, without waiting for more."""
    while True:
        try:
            data = os.read(pipe.fileno(), _READ)
        except BlockingIOError:
            return
        if not data:
            return
        into += data


def _read_to_end(pipe: IO[bytes], deadline: float) -> None:
    """Discard a retired run's output until EOF or `deadline`, so it never blocks writing."""
    with selectors.DefaultSelector() as sel:
        sel.register(pipe, selectors.EVENT_READ)
        while sel.select(max(0.0, deadline - time.monotonic())):
            if not os.read(pipe.fileno(), _READ):
                return
