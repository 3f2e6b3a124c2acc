"""The `rsync` backend: one rsync client run per batch against an rsync daemon.

One process per `fetch()` keeps the per-file cost low (one connection, one
file list) for the batches of thousands of records fs_mirror sends. rsync
writes into a fresh staging directory on the mirror's own filesystem; each staged file is
then fsynced and renamed over its destination, so rsync never writes through
an existing file and a hard link to the old content stays intact.

The password travels in RSYNC_PASSWORD, never on the command line; the
command is an argument vector, never a shell string. Names go through
`--files-from=- --from0`, so any byte (newlines included) is safe.
The process runs in a worker thread with `subprocess`: no SIGCHLD handling
is needed from the reactor. It reaches the daemon through `AckingRelay`
(fs_sync/rsyncrelay.py), which spares each run two 40 ms delayed-ACK stalls
against a daemon without `socket options = TCP_NODELAY`.

A small change must not wait for rsync's start or its exit
(fs_sync/rsyncrun.py, fs_sync/rsyncwatch.py):

- after each batch the next run is started, a *standby*: connected,
  authenticated, its arguments sent, blocked reading its names. It holds
  one of the module's `max connections` while it waits; the keepalives of
  both sides keep the daemon's `timeout` from ending it. A standby that
  died meanwhile, or that fails as a whole once given names, is replaced
  by a fresh run of the same batch, so a batch is never lost to it;
- a run is done once inotify has seen each of its files renamed into
  staging (rsync renames a file there only when it is checked, timed and
  moded), or else once rsync has printed its summary; each file so seen
  is installed at once, while rsync goes on with the others; the process, which
  then sleeps ~20 ms before exiting, is reaped on a thread of its own and
  its staging directory removed after it exited. `close()` ends the
  standby (an empty list), waits for every run and leaves no process.

What went wrong is read from rsync's exit code and stderr (run with
LC_ALL=C, so messages are English and every byte outside ASCII in a name
is escaped as `\\#ooo`):

- a whole-run failure (wrong password, unknown module, daemon unreachable,
  protocol error, timeout, any exit but 0/23/24) fails the whole `fetch`
  with `BackendUnavailable`, one line saying what to check;
- partial transfer (23/24) stays per file: a name rsync could not stat or
  open on the worker for a reason other than "no such file" is FAILED with
  that reason, a file simply not there is VANISHED;
- the mirror's own disk refusing a write (rsync's receiver reporting
  ENOSPC/EDQUOT/EROFS/EIO, or installing a staged file) raises
  `LocalDiskError`, whatever the exit code.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from fs_sync.atomic import copy_fd, install, refuse_directory
from fs_sync.beneath import SymlinkInPath, open_beneath
from fs_sync.interface import (
    LOCAL_DISK_ERRNOS,
    BackendUnavailable,
    FetchItem,
    LocalDiskError,
    Outcome,
    Result,
    is_local_disk_error,
)
from fs_sync.rsyncrelay import AckingRelay
from fs_sync.rsyncrun import Finished, RsyncRun
from fs_sync.rsyncwatch import StagedWatch

#: which runs a standby can serve: (module, basis directory for --copy-dest)
_Key = tuple[bytes, bytes | None]

# rsync's exit codes that still mean "the rest was transferred":
# 23 partial transfer (e.g. a file not found), 24 source files vanished.
_PARTIAL_OK = (0, 23, 24)
_STDERR_KEEP = 1 << 20  # per-file complaints of a 1024-name run fit
#: Files per rsync run. Each run costs a fixed ~0.1 s (file lists traded,
#: closing messages), so fewer, bigger runs serve a burst sooner.
RUN_MAX = 8192
#: Files per run of an rsync that checks each name it receives against the
#: list it sent and cannot be told not to (3.2.5's CVE-2022-29154 checks
#: without --trust-sender): a linear search per name, user time for 1024
#: names ~0.05 s, 4096 ~0.6 s, 8192 ~2.2 s.
CHECKED_RUN_MAX = 1024
#: how long a standby given no names may take to exit before it is killed
_RETIRE_BOUND = 5.0


def split_module(path: bytes) -> tuple[bytes, bytes] | None:
    """`/module/rel/path` -> (b"module", b"rel/path"); None without both parts."""
    module, _, rel = path.lstrip(b"/").partition(b"/")
    rel = rel.strip(b"/")
    if not module or not rel:
        return None
    return module, rel


def build_argv(
    rsync: str,
    url: bytes,
    staging: bytes,
    timeout: int,
    basis: bytes | None = None,
    *,
    trust_sender: bool = False,
) -> list[bytes | str]:
    """The rsync command for one batch (the file list comes on stdin).

    `basis` is the mirror directory that corresponds to the module: rsync
    finds each file's current copy there (`--copy-dest`) and transfers only
    the changed blocks of a big file, while still writing into staging.

    `trust_sender` turns off rsync's check that each name the daemon lists
    was one we asked for: a linear search of our list per name, 2-3 s of CPU
    for a run of 10,000 names. We do not need it: rsync writes only into a
    fresh staging directory of ours (it still refuses a name that climbs out
    of it), only the names we asked for are installed from there, and
    anything else the daemon might send goes with the staging directory.
    """
    argv: list[bytes | str] = [
        rsync,
        "--from0",
        "--files-from=-",
        "--times",
        # An FWRITE says the content changed: never trust size+mtime (a write
        # within one timestamp tick, or mtime restored by cp -p, looks equal).
        "--ignore-times",
        "--chmod=Du+rwx",  # staged directories stay removable
        "--no-motd",
        "--stats",  # literal vs matched bytes: what delta transfer saved
        f"--timeout={timeout}",
        f"--contimeout={timeout}",
        # rsync writes its handshake in small pieces: with Nagle each waits
        # for the daemon's delayed ACK (40 ms on Linux), twice per run.
        "--sockopts=TCP_NODELAY",
    ]
    if basis is not None:
        argv.append(b"--copy-dest=" + basis)
    if trust_sender:
        argv.append("--trust-sender")
    return [*argv, "--", url, staging + b"/"]


def offers_trust_sender(help_text: bytes) -> bool:
    """Whether an rsync's `--help` lists `--trust-sender` (3.2.5 and later)."""
    return b"--trust-sender" in help_text


def probe_trust_sender(rsync: str, timeout: float) -> bool:
    """Whether the rsync command takes `--trust-sender`; False if it cannot be asked."""
    try:
        done = subprocess.run(
            [rsync, "--help"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return False  # the run itself will say what is wrong with the command
    return offers_trust_sender(done.stdout)


def parse_stats(stdout: bytes) -> tuple[int, int]:
    """(literal, matched) bytes from `rsync --stats` output; 0 for what is missing."""
    found = {b"Literal data": 0, b"Matched data": 0}
    for line in stdout.splitlines():
        key, sep, rest = line.partition(b":")
        if sep and key.strip() in found:
            digits = rest.strip().split(b" ")[0].replace(b",", b"")
            if digits.isdigit():
                found[key.strip()] = int(digits)
    return found[b"Literal data"], found[b"Matched data"]


def basis_of(members: Sequence[tuple[FetchItem, bytes]]) -> bytes | None:
    """The mirror directory where a module's relative paths already live, if one."""
    bases = set()
    for item, rel in members:
        suffix = b"/" + rel
        if not item.local.endswith(suffix):
            return None
        bases.add(item.local[: -len(suffix)] or b"/")
    return bases.pop() if len(bases) == 1 else None


def daemon_url(host: str, port: int, user: str | None, module: bytes) -> bytes:
    hostpart = f"[{host}]" if ":" in host else host
    userpart = f"{user}@" if user else ""
    return f"rsync://{userpart}{hostpart}:{port}/".encode() + module + b"/"


def _first_line(stderr: bytes) -> str:
    for line in stderr.splitlines():
        if line.strip():
            return line.decode("utf-8", "backslashreplace")
    return ""


#: `rsync: [sender] ... "NAME" (in MODULE)...: REASON (ERRNO)`, the daemon
#: side's complaint about one name.
_SENDER_LINE = re.compile(
    rb'^(?:rsync: \[sender\] .*?|file has vanished: )"(.*)" \(in [^)]*\)(.*)$'
)
_ERRNO_TAIL = re.compile(rb"\((\d+)\)\s*$")
#: tags of the processes that run here, on the mirror (the receiving side)
_LOCAL_TAGS = (b"[receiver]", b"[Receiver]", b"[generator]", b"[client]")
_UNREACHABLE = (10, 35)  # socket I/O error; timeout waiting for the daemon


def unescape_name(quoted: bytes) -> bytes:
    """rsync's `\\#ooo` escapes in a name it printed, back to the bytes."""
    return re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), quoted)


def file_errors(stderr: bytes) -> dict[bytes, tuple[int, str]]:
    """{name in module: (errno, reason)} for each name the sender complained about."""
    found: dict[bytes, tuple[int, str]] = {}
    for line in stderr.splitlines():
        match = _SENDER_LINE.match(line)
        if match is None:
            continue
        name, tail = unescape_name(match.group(1)), match.group(2)
        code = _ERRNO_TAIL.search(tail)
        number = int(code.group(1)) if code else errno.ENOENT  # "file has vanished"
        reason = tail.partition(b": ")[2].strip() or line.strip()
        found[name] = (number, reason.decode("utf-8", "backslashreplace"))
    return found


def local_disk_error(stderr: bytes) -> LocalDiskError | None:
    """The mirror's disk refusing rsync's writes, from rsync's receiver messages."""
    for line in stderr.splitlines():
        code = _ERRNO_TAIL.search(line)
        if (
            code
            and int(code.group(1)) in LOCAL_DISK_ERRNOS
            and any(tag in line for tag in _LOCAL_TAGS)
        ):
            number = int(code.group(1))
            text = line.decode("utf-8", "backslashreplace").strip()
            return LocalDiskError(number, f"{os.strerror(number)} (rsync: {text})")
    return None


def whole_run_error(
    code: int, stderr: bytes, where: str, user: str | None, module: bytes, timeout: int
) -> BackendUnavailable:
    """One clear line for a run that failed as a whole (`where` is HOST:PORT)."""
    detail = _first_line(stderr)
    said = detail.removeprefix("@ERROR: ").strip()
    name = module.decode("utf-8", "backslashreplace")
    if "auth failed" in detail:
        who = f"user {user}" if user else "a login without a user (set fssync.user)"
        return BackendUnavailable(
            f"rsync daemon at {where} refused the password for {who} on module {name!r}"
            " (check --password-from / fssync.password-from against the daemon's secrets file)",
            auth=True,
        )
    if "Unknown module" in detail:
        return BackendUnavailable(
            f"rsync daemon at {where} has no module {name!r} (check fssync.root)"
        )
    if code in _UNREACHABLE or "failed to connect" in detail:
        reason = _reason(stderr) or detail or f"rsync exit {code}"
        return BackendUnavailable(
            f"cannot reach rsync daemon at {where}: {reason}"
            " (check that rsync --daemon runs there and fssync.host/fssync.port)"
        )
    if code == 30:
        return BackendUnavailable(f"rsync daemon at {where} sent nothing for {timeout} s (timeout)")
    if detail.startswith("@ERROR"):
        return BackendUnavailable(f"rsync daemon at {where} refused module {name!r}: {said}")
    return BackendUnavailable(f"rsync from {where} failed (exit {code}): {detail or 'no message'}")


def _reason(stderr: bytes) -> str:
    """`Connection refused (111)` from rsync's `failed to connect to ...: ` line."""
    for line in stderr.splitlines():
        if b"failed to connect" in line:
            return line.rpartition(b": ")[2].strip().decode("utf-8", "backslashreplace")
    return ""


def _socket_reason(error: OSError) -> str:
    """`Connection refused (111)`, as rsync itself words a failed connect."""
    if error.errno is None:
        return str(error) or type(error).__name__
    return f"{error.strerror} ({error.errno})"


class RsyncFetcher:
    """Fetcher pulling `root + path` from an rsync daemon module.

    `root` names the module and any directory in it (`/mirror` -> module
    `mirror`); with an empty root the first component of each worker path is
    the module. `staging_dir` must be on the mirror's filesystem.
    """

    # --times sets the worker's mtime, but at the precision the two rsyncs
    # share (whole seconds before protocol 31): fs_mirror compares sizes only.
    keeps_mtime = False

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: bytes | None,
        root: bytes,
        staging_dir: bytes,
        reactor: IReactorFromThreads,
        *,
        rsync: str = "rsync",
        timeout: int = 60,
        fsync: bool = True,
        run_max: int = RUN_MAX,
        watch: bool = True,
    ) -> None:
        self.fsync = fsync
        self.watch = watch  # end a run once inotify saw each file staged
        self.run_max = max(1, run_max)
        self._trust_sender: bool | None = None  # asked of the rsync command by the first run
        self._literal = 0  # sent as data, over all runs
        self._matched = 0  # rebuilt from the mirror's old copy (delta transfer)
        self._stats_lock = threading.Lock()  # runs ended early are counted by their reaper
        self.host, self.port, self.user = host, port, user
        self.root = root.rstrip(b"/")
        self.staging_dir = staging_dir
        self.rsync = rsync
        self.timeout = timeout
        self._env = {k: v for k, v in os.environ.items() if k != "RSYNC_PASSWORD"}
        self._env["LC_ALL"] = "C"  # English messages, names escaped byte by byte
        if password is not None:
            self._env["RSYNC_PASSWORD"] = os.fsdecode(password)
        self._reactor = reactor
        self._relay: AckingRelay | None = None  # made by the first run, in the worker thread
        self._standby: RsyncRun | None = None  # started ahead of the next batch
        self._exiting: list[threading.Thread] = []  # each reaps a run read to its summary
        self._closing = False
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="fs_sync-rsync")
        self._pool.start()

    @property
    def literal_bytes(self) -> int:
        """Bytes rsync sent as data, over all runs (once those still exiting have)."""
        self._await_exits()
        return self._literal

    @property
    def matched_bytes(self) -> int:
        """Bytes rebuilt from the mirror's old copy (delta transfer), over all runs."""
        self._await_exits()
        return self._matched

    def _await_exits(self) -> None:
        for reaper in list(self._exiting):
            reaper.join()

    def _count(self, stdout: bytes) -> None:
        literal, matched = parse_stats(stdout)
        with self._stats_lock:
            self._literal += literal
            self._matched += matched

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]:
        batch = list(items)
        return deferToThreadPool(self._reactor, self._pool, self._fetch_batch, batch)

    def close(self) -> Deferred[None]:
        self._closing = True
        self._pool.stop()  # joins the worker: what follows has the runs to itself
        self._shutdown()
        if self._relay is not None:
            self._relay.close()
        return succeed(None)

    # -- worker thread --

    def _fetch_batch(self, batch: list[FetchItem]) -> list[Result]:
        results: dict[int, Result] = {}
        groups: dict[bytes, list[tuple[int, bytes]]] = {}
        for index, item in enumerate(batch):
            refused = refuse_directory(item)
            split = split_module(self.root + item.remote)
            if refused:
                results[index] = refused
            elif split is None:
                results[index] = (item, Outcome.FAILED, "path names no rsync module")
            else:
                groups.setdefault(split[0], []).append((index, split[1]))
        key = None
        try:
            for module, members in groups.items():
                size = self.run_limit()
                for start in range(0, len(members), size):
                    run = members[start : start + size]
                    key = (module, basis_of([(batch[index], rel) for index, rel in run]))
                    self._run_module(key, run, batch, results)
        finally:
            # once this batch's results are on their way to the reactor
            self._pool.callInThread(self._after, key)
        return [results[i] for i in range(len(batch))]

    def run_limit(self) -> int:
        """Names per run: fewer when this rsync checks each name and cannot be told not to."""
        if self._trust_sender is None:
            self._trust_sender = probe_trust_sender(self.rsync, self.timeout)
        return self.run_max if self._trust_sender else min(self.run_max, CHECKED_RUN_MAX)

    def _run_module(
        self,
        key: _Key,
        members: list[tuple[int, bytes]],
        batch: list[FetchItem],
        results: dict[int, Result],
    ) -> None:
        listing = b"".join(rel + b"\0" for _, rel in members)
        early = _Installer(members, batch, results, self.fsync)
        standby = self._take(key)
        if standby is not None:
            done = self._complete(standby, listing, early)
            if done is not None and (
                done.code is None or done.code in _PARTIAL_OK or local_disk_error(done.stderr)
            ):
                try:
                    self._settle(key[0], done, standby.staging, members, batch, results, early)
                finally:
                    self._done_with(standby)
                return
            # The standby had died or timed out waiting (daemon restarted,
            # connection cut): nothing was installed; a fresh run retries.
            self._done_with(standby)
        run = self._start(key)
        try:
            done = self._complete(run, listing, early)
            if done is None:
                where = f"{self.host}:{self.port}"
                raise BackendUnavailable(f"rsync from {where} failed: its output could not be read")
            self._settle(key[0], done, run.staging, members, batch, results, early)
        finally:
            self._done_with(run)

    def _complete(
        self, run: RsyncRun, listing: bytes, early: _Installer | None = None
    ) -> Finished | None:
        """Run `run` on `listing`; None (and the process reaped) if our side failed.

        With `early`, each file is installed as soon as it is staged.
        """
        watch = None
        if self.watch:
            with contextlib.suppress(OSError, ValueError):  # no early end: the summary will do
                watch = StagedWatch(run.staging, _names(listing))
        on_staged = None
        if early is not None:
            on_staged = functools.partial(early.install, run.staging)
        try:
            done = run.complete(listing, self.timeout, watch, on_staged)
        except OSError:
            run.proc.kill()
            run.finish(self.timeout)
            done = None
        if done is None or done.code is not None:
            if watch is not None:
                watch.close()
            return done
        # still exiting (rsync sleeps ~20 ms): reap it meanwhile, and close the
        # watch there too (closing an inotify descriptor waits ~15 ms for RCU)
        reaper = threading.Thread(
            target=self._reap_run,
            args=(run, watch, not done.summary),
            name="fs_sync-rsync-reap",
            daemon=True,
        )
        run.reaper = reaper
        reaper.start()
        self._exiting.append(reaper)
        return done

    def _reap_run(self, run: RsyncRun, watch: StagedWatch | None, count: bool) -> None:
        if watch is not None:
            watch.close()
        run.finish(self.timeout)
        if count:  # ended when its files were staged: its summary came later
            self._count(run.late_stdout)
        run.settled.wait()  # every staged file installed: the worker set it in a finally
        shutil.rmtree(run.staging, ignore_errors=True)

    @staticmethod
    def _done_with(run: RsyncRun) -> None:
        """The batch has what it wanted from `run`: its staging may go (now, or once it exited)."""
        run.settled.set()
        if run.reaper is None:
            shutil.rmtree(run.staging, ignore_errors=True)

    def _settle(
        self,
        module: bytes,
        done: Finished,
        staging: bytes,
        members: list[tuple[int, bytes]],
        batch: list[FetchItem],
        results: dict[int, Result],
        early: _Installer | None = None,
    ) -> None:
        """Results for one run's members from what rsync said and what it staged
        (those installed while it ran, by `early`, are kept)."""
        where = f"{self.host}:{self.port}"
        if done.summary:
            self._count(done.stdout)
        disk = local_disk_error(done.stderr)
        if disk is not None:
            raise disk
        if early is not None and early.error is not None:
            raise early.error
        if done.code is not None and done.code not in _PARTIAL_OK:
            raise whole_run_error(done.code, done.stderr, where, self.user, module, self.timeout)
        complaints = file_errors(done.stderr)
        installed: dict[bytes, bytes] = {}  # rel -> local, for a path asked twice
        for index, rel in members:
            item = batch[index]
            if early is not None and index in early.done:
                if results[index][1] is Outcome.DONE:
                    installed[rel] = item.local
                continue
            if rel in installed:
                results[index] = _copy_installed(item, installed[rel], self.fsync)
            else:
                results[index] = _collect(item, staging, rel, self.fsync)
            outcome = results[index][1]
            if outcome is Outcome.DONE:
                installed[rel] = item.local
            elif outcome is Outcome.VANISHED and rel in complaints:
                number, reason = complaints[rel]
                if number not in (errno.ENOENT, errno.ENOTDIR):
                    results[index] = (item, Outcome.FAILED, f"on the worker: {reason}")
                else:
                    results[index] = (item, Outcome.VANISHED, reason)

    # -- the runs: one standby, and those still exiting --

    def _start(self, key: _Key) -> RsyncRun:
        """A new rsync run for `key`, connected (or connecting) to the daemon."""
        module, basis = key
        self._reap(keep=1)  # at most one earlier run still holds a connection
        where = f"{self.host}:{self.port}"
        if self._relay is None:
            self._relay = AckingRelay(self.host, self.port, self.timeout)
        try:
            self._relay.dial()
        except OSError as e:
            raise BackendUnavailable(
                f"cannot reach rsync daemon at {where}: {_socket_reason(e)}"
                " (check that rsync --daemon runs there and fssync.host/fssync.port)"
            ) from e
        url = daemon_url("127.0.0.1", self._relay.port, self.user, module)
        os.makedirs(self.staging_dir, mode=0o700, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=b".batch-", dir=self.staging_dir)
        self.run_limit()  # asks the command once whether it takes --trust-sender
        argv = build_argv(
            self.rsync, url, staging, self.timeout, basis, trust_sender=bool(self._trust_sender)
        )
        try:
            return RsyncRun(argv, self._env, staging, key, stderr_keep=_STDERR_KEEP)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise BackendUnavailable(f"cannot run {self.rsync}: {e.strerror}") from e

    def _take(self, key: _Key) -> RsyncRun | None:
        """The standby, if it is alive and serves `key`; otherwise None."""
        run, self._standby = self._standby, None
        if run is None:
            return None
        if run.key == key and run.alive():
            return run
        self._retire(run)
        return None

    def _after(self, key: _Key | None) -> None:
        """Start the standby for the next batch (one like the last)."""
        if key is not None and not self._closing and self._standby is None:
            try:
                self._standby = self._start(key)
            except (BackendUnavailable, OSError):
                pass  # the next batch starts its own run and says what is wrong

    def _retire(self, run: RsyncRun) -> None:
        run.retire(_RETIRE_BOUND)
        shutil.rmtree(run.staging, ignore_errors=True)

    def _reap(self, keep: int) -> None:
        """Wait until at most `keep` earlier runs are still exiting."""
        still = [reaper for reaper in self._exiting if reaper.is_alive()]
        while len(still) > keep:
            still.pop(0).join()  # bounded: finish() kills after the timeout
        self._exiting = still

    def _shutdown(self) -> None:
        run, self._standby = self._standby, None
        if run is not None:
            self._retire(run)
        self._reap(keep=0)


class _Installer:
    """Installs a run's files while it runs, each as soon as rsync has staged it.

    Only the first member asking for a name is installed here (`_settle`
    copies it for any other). A refusal of the mirror's disk stops it and is
    raised by `_settle`; it never raises into the run's reading loop.
    """

    def __init__(
        self,
        members: list[tuple[int, bytes]],
        batch: list[FetchItem],
        results: dict[int, Result],
        fsync: bool,
    ) -> None:
        self._first: dict[bytes, int] = {}
        for index, rel in members:
            self._first.setdefault(rel, index)
        self._batch, self._results, self._fsync = batch, results, fsync
        self.done: set[int] = set()  # members whose result is in
        self.error: OSError | None = None

    def install(self, staging: bytes, rels: list[bytes]) -> None:
        for rel in rels:
            index = self._first.get(rel)
            if self.error is not None or index is None or index in self.done:
                continue
            try:
                result = _collect(self._batch[index], staging, rel, self._fsync)
            except OSError as e:  # the mirror's disk: _settle raises it
                self.error = e
                return
            self._results[index] = result
            self.done.add(index)


def _names(listing: bytes) -> list[bytes]:
    return listing.split(b"\0")[:-1]


def _collect(item: FetchItem, staging: bytes, rel: bytes, fsync: bool = True) -> Result:
    """Install `staging/rel` over `item.local` and say what happened.

    No symlink below `staging` is followed: the daemon decides what its side
    of rsync stages, and a directory it made a symlink must not get a file of
    this host moved (or read) into the mirror through it.
    """
    parent, _, name = rel.rpartition(b"/")
    try:
        # Not O_DIRECTORY: with O_NOFOLLOW it says ENOTDIR for a symlink, not ELOOP.
        # O_NONBLOCK: a FIFO staged in a directory's place must not hang the open.
        dir_fd = open_beneath(staging, parent, os.O_RDONLY | os.O_NONBLOCK)
    except SymlinkInPath:
        return (item, Outcome.FAILED, "staged below a symlink: refused")
    except OSError as e:
        if e.errno == errno.ELOOP:
            return (item, Outcome.FAILED, "staged below a symlink: refused")
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return (item, Outcome.VANISHED, "not transferred")
        if is_local_disk_error(e):
            raise
        return (item, Outcome.FAILED, f"install: {e.strerror or e}")
    try:
        if not stat.S_ISDIR(os.fstat(dir_fd).st_mode):
            return (item, Outcome.VANISHED, "not transferred")
        try:
            mode = os.lstat(name, dir_fd=dir_fd).st_mode
        except FileNotFoundError:
            return (item, Outcome.VANISHED, "not transferred")
        if not stat.S_ISREG(mode):
            return (item, Outcome.NOT_A_FILE, "not a regular file on the server")
        try:
            install(name, item.local, fsync, dir_fd=dir_fd)
        except OSError as e:
            if is_local_disk_error(e):
                raise
            return (item, Outcome.FAILED, f"install: {e.strerror or e}")
    finally:
        os.close(dir_fd)
    return (item, Outcome.DONE, "")


def _copy_installed(item: FetchItem, installed: bytes, fsync: bool = True) -> Result:
    """A second member asking for a name already installed: a copy of that file."""
    try:
        fd = os.open(installed, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            copy_fd(fd, item.local, fsync=fsync)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return (item, Outcome.VANISHED, "not transferred")
    except OSError as e:
        if is_local_disk_error(e):
            raise
        return (item, Outcome.FAILED, f"install: {e.strerror or e}")
    return (item, Outcome.DONE, "")
