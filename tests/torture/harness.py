"""One mirrord and its fs_mirror clients on every backend, run as a user runs them.

``Rig`` lays out base/{root, root/excl, out}, makes the identity (root
included, root/excl excluded), starts mirrord with its embedded FTP service,
a real ``rsync --daemon`` on loopback when a client needs it, and one
fs_mirror per backend.  It can kill any of them with SIGKILL and start them
again, says what differs between the worker and each mirror, and keeps the
figures a run reports.  ``Reader`` opens mirror files while the run goes on
and records any sealed content it finds cut short.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fs_mirror.state import RESERVED
from tests.daemons import Proc, Worker, command, mirror_of, tree_entries
from tests.helpers import free_port, wait_for
from tests.torture import workload

BACKENDS = ("local", "rsync", "ftp")
CONVERGE_S = 10.0  # after the writer stops; the product promises about one second


def replay_command(test_file: str, seed: int, backend: str | None = None) -> str:
    tail = f" --backend {backend}" if backend else ""
    return f".venv/bin/python -m pytest -p no:cacheprovider -s {test_file} --seed {seed}{tail}"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _show(rel: str) -> str:
    return repr(rel.encode("utf-8", "surrogateescape"))[1:]


def tree_differences(base: Path, datadir: Path) -> list[str]:
    """What a mirror has wrong: root's tree without root/excl, and nothing of out/."""
    root = base / workload.ROOT
    excl = os.path.relpath(base / workload.EXCL, root)
    want = {
        rel: rest
        for rel, *rest in tree_entries(root)
        if not (rel == excl or rel.startswith(excl + "/"))
    }
    mirror = mirror_of(datadir, root)
    have = {rel: rest for rel, *rest in tree_entries(mirror)} if mirror.exists() else {}
    problems = []
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            problems.append(f"missing in mirror: {_show(rel)} ({want[rel][0]})")
        elif rel not in want:
            problems.append(f"extra in mirror: {_show(rel)} ({have[rel][0]})")
        else:
            (ka, ca, ma), (kb, cb, mb) = want[rel], have[rel]
            if ka != kb:
                problems.append(f"type {ka} != {kb}: {_show(rel)}")
            elif ca != cb:
                detail = (
                    f"worker {len(ca)} B, mirror {len(cb)} B"
                    if isinstance(ca, bytes) and isinstance(cb, bytes)
                    else f"worker {ca!r}, mirror {cb!r}"
                )
                problems.append(f"content differs ({detail}): {_show(rel)}")
            elif ma != mb:
                problems.append(f"mode {oct(ma)} != {oct(mb)}: {_show(rel)}")
    if mirror_of(datadir, base / workload.OUT).exists():
        problems.append("out/ (outside the included root) is in the mirror")
    return problems


@dataclass
class Figures:
    """What a run did, for the report: printed with -s and put in assertion messages."""

    seeds: dict[str, int] = field(default_factory=dict)
    ops: int = 0
    failed_ops: int = 0
    crashes: dict[str, int] = field(default_factory=dict)
    records: int = 0
    differences: int = 0
    reads: int = 0
    sealed_reads: int = 0
    converge_s: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"torture figures: seeds/backend {self.seeds} ops {self.ops} "
            f"(failed harmlessly {self.failed_ops}) crashes {self.crashes} "
            f"records {self.records} differences {self.differences} "
            f"reader {self.reads} reads ({self.sealed_reads} sealed) "
            f"converged in { ({k: round(v, 2) for k, v in self.converge_s.items()}) }"
        )


class Rsyncd:
    """``rsync --daemon`` on loopback exporting / read-only as module ``w``."""

    def __init__(self, tmp: Path, secrets: Path) -> None:
        self.port = free_port()
        conf = tmp / "rsyncd.conf"
        conf.write_text(
            "use chroot = no\n"
            f"pid file = {tmp / 'rsyncd.pid'}\n"
            "[w]\n    path = /\n    read only = yes\n    uid = root\n    gid = root\n"
            f"    auth users = backup\n    secrets file = {secrets}\n"
        )
        self.proc = Proc(
            ["rsync", "--daemon", "--no-detach", "--address=127.0.0.1", f"--port={self.port}",
             f"--config={conf}", "--log-file=/dev/null"]
        )  # fmt: skip
        wait_for(lambda: _listening(self.port), 10, message="rsync daemon")

    def stop(self) -> None:
        self.proc.kill()


class Rig:
    """base/{root,root/excl,out}, a mirrord serving root, one fs_mirror per backend."""

    def __init__(
        self, tmp: Path, backends: tuple[str, ...], mirrord_options: tuple[str, ...] = ()
    ) -> None:
        self.tmp = tmp
        self.base = tmp / "w"
        for area in (workload.ROOT, workload.EXCL, workload.OUT):
            (self.base / area).mkdir(parents=True, exist_ok=True)
        self.backends = backends
        self.secrets = tmp / "secrets"
        self.secrets.write_text("ftp ftp-pass\n")
        os.chmod(self.secrets, 0o600)
        self.rsyncd_secrets = tmp / "rsyncd.secrets"
        self.rsyncd_secrets.write_text("backup:rsync-pass\n")
        os.chmod(self.rsyncd_secrets, 0o600)
        self.rsync_pw = tmp / "rsync.pw"
        self.rsync_pw.write_text("rsync rsync-pass\n")
        os.chmod(self.rsync_pw, 0o600)
        self.ftp_port = free_port()
        self.worker = Worker(
            tmp / "mirrord",
            [self.base / workload.ROOT],
            [self.base / workload.EXCL],
            options=["-o", f"ftp.port={self.ftp_port}",
                     "-o", f"ftp.password-from={self.secrets}:ftp", *mirrord_options],
        )  # fmt: skip
        self.rsyncd = Rsyncd(tmp, self.rsyncd_secrets) if "rsync" in backends else None
        self.clients: dict[str, Proc] = {}
        self.history: dict[str, list[Proc]] = {b: [] for b in backends}
        self.mirrord_history: list[Proc] = []
        self.initialized: set[str] = set()
        self.figures = Figures()

    # processes ----------------------------------------------------------------
    def datadir(self, backend: str) -> Path:
        return self.tmp / f"mirror-{backend}"

    def start_mirrord(self, wait: bool = True) -> Proc:
        self.worker.proc = Proc(self.worker.argv)
        self.mirrord_history.append(self.worker.proc)
        if wait:
            self.worker.proc.wait_line("boot init finished", 120)
        return self.worker.proc

    def kill_mirrord(self) -> None:
        assert self.worker.proc is not None
        self.worker.proc.kill()
        self.figures.crashes["mirrord"] = self.figures.crashes.get("mirrord", 0) + 1

    def client_argv(self, backend: str) -> list[str]:
        argv = [command("fs_mirror"), "-o", "host=127.0.0.1", "-o", f"port={self.worker.port}",
                "-o", f"fssync.type={backend}", "-o", "reconnect.max=1",
                f"--datadir={self.datadir(backend)}"]  # fmt: skip
        if backend == "rsync":
            assert self.rsyncd is not None
            argv += ["-o", f"fssync.port={self.rsyncd.port}", "-o", "fssync.user=backup",
                     "-o", "fssync.root=/w", f"--password-from={self.rsync_pw}:rsync"]  # fmt: skip
        elif backend == "ftp":
            argv += ["-o", f"fssync.port={self.ftp_port}", "-o", "fssync.user=mirror",
                     f"--password-from={self.secrets}:ftp"]  # fmt: skip
        return argv

    def start_client(self, backend: str) -> Proc:
        proc = Proc(self.client_argv(backend))
        self.clients[backend] = proc
        self.history[backend].append(proc)
        return proc

    def wait_init(self, backend: str, timeout: float = 45.0) -> None:
        self.clients[backend].wait_line("init finished", timeout)
        self.initialized.add(backend)

    def kill_client(self, backend: str) -> None:
        self.clients[backend].kill()
        key = f"fs_mirror-{backend}"
        self.figures.crashes[key] = self.figures.crashes.get(key, 0) + 1

    def start(self) -> None:
        """mirrord, then every client through its first full sync."""
        self.start_mirrord()
        for b in self.backends:
            self.start_client(b)
        for b in self.backends:
            self.wait_init(b)

    def stop(self) -> None:
        for proc in self.clients.values():
            proc.kill()
        if self.worker.proc is not None:
            self.worker.proc.kill()
        if self.rsyncd is not None:
            self.rsyncd.stop()
        self.keep_logs()

    def keep_logs(self) -> None:
        """Every process's whole output in TMP/logs, for the replay of a failure."""
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        runs = {"mirrord": self.mirrord_history, **self.history}
        for name, procs in runs.items():
            for i, proc in enumerate(procs):
                (logs / f"{name}-{i}.log").write_text(proc.output(), errors="replace")

    def head(self) -> int:
        """mirrord's head serial (records logged so far), from ``-k status --json``.

        Falls back to ``-v -k status`` (also JSON) where ``--json`` is not
        accepted yet: the contract (section 6) names ``--json``.
        """
        base = [command("mirrord"), "-o", f"datadir={self.worker.datadir}"]
        for argv in ([*base, "-k", "status", "--json"], [*base, "-v", "-k", "status"]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                return int(json.loads(done.stdout)["head"])
        raise AssertionError(f"mirrord -k status: {done.stdout}{done.stderr}")

    # checks -------------------------------------------------------------------
    def differences(self, backend: str) -> list[str]:
        try:
            return tree_differences(self.base, self.datadir(backend))
        except (FileNotFoundError, NotADirectoryError) as exc:  # the mirror changing under us
            return [f"(changing: {exc})"]

    def converge(self, timeout: float = CONVERGE_S) -> dict[str, list[str]]:
        """Wait until every mirror equals the worker; the differences left per backend."""
        t0 = time.monotonic()
        left: dict[str, list[str]] = {}
        pending = set(self.backends)

        def settled() -> bool:
            for b in sorted(pending):
                diff = self.differences(b)
                if diff:
                    left[b] = diff
                else:
                    left.pop(b, None)
                    pending.discard(b)
                    self.figures.converge_s[b] = time.monotonic() - t0
            return not pending

        try:
            wait_for(settled, timeout, 0.05, "the mirrors to equal the worker")
        except AssertionError:
            pass  # what is left is the caller's to report, with its replay
        self.figures.differences += sum(len(v) for v in left.values())
        return left

    def outputs(self, tail: int = 3000) -> str:
        parts = []
        if self.worker.proc is not None:
            parts.append(f"--- mirrord ---\n{self.worker.proc.output()[-tail:]}")
        for b, proc in self.clients.items():
            parts.append(f"--- fs_mirror {b} ---\n{proc.output()[-tail:]}")
        return "\n".join(parts)


def _mirrored(mirror: Path):
    """``os.walk`` of the mirrored tree only: fs_mirror's own staging folder is not in it."""
    for top, dirs, files in os.walk(mirror):
        if top == str(mirror):
            dirs[:] = [d for d in dirs if os.fsencode(d) not in RESERVED]
            files = [f for f in files if os.fsencode(f) not in RESERVED]
        yield top, dirs, files


class Reader(threading.Thread):
    """Opens random files of the mirrors until stopped; keeps any sealed content cut short."""

    def __init__(self, mirrors: list[Path], seed: int) -> None:
        super().__init__(daemon=True)
        self.mirrors = mirrors
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.reads = 0
        self.sealed = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            for mirror in self.mirrors:
                files = [os.path.join(d, f) for d, _, fs in _mirrored(mirror) for f in fs]
                for path in self.rng.sample(files, min(len(files), 40)):
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    except OSError:
                        continue
                    try:
                        content = b"".join(iter(lambda fd=fd: os.read(fd, 1 << 16), b""))
                    except OSError:
                        continue
                    finally:
                        os.close(fd)
                    self.reads += 1
                    self.sealed += content.startswith(workload.MAGIC)
                    if not workload.check(content):
                        self.bad.append(f"{path!r}: {len(content)} B {content[:80]!r}")
            self.halt.wait(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def run_workload(
    rig: Rig,
    wl: workload.Workload,
    n_ops: int | None,
    seconds: float | None = None,
    on_tick=None,
) -> workload.Executor:
    """Apply ``n_ops`` of ``wl``'s operations (or as many as ``seconds`` allow, for soaks).

    The writer goes in bursts of a seeded size with short seeded pauses between
    them: the same seed replays the same operations in the same order and
    nearly the same rhythm.  ``on_tick(executor)`` runs after every operation.
    """
    ex = workload.Executor(rig.base)
    pace = random.Random(wl.rng.random())
    pause = threading.Event()  # never set: wait() paces the writer, it synchronises nothing
    deadline = time.monotonic() + seconds if seconds is not None else None
    ops = wl.ops(n_ops if n_ops is not None else 10**9)
    burst = 0
    for op in ops:
        if deadline is not None and time.monotonic() > deadline:
            break
        ex.apply(op)
        if on_tick is not None:
            on_tick(ex)
        burst -= 1
        if burst <= 0:
            burst = pace.choice((1, 5, 20, 100))
            pause.wait(pace.choice((0.0, 0.005, 0.02, 0.05)))
    rig.figures.ops += sum(ex.done.values()) + sum(ex.failed.values())
    rig.figures.failed_ops += sum(ex.failed.values())
    return ex


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
