"""Run the real commands as subprocesses and talk to them as a person would.

End-to-end tests use these: `mirrord`, `fs_mirror` and `fs_info` from the
virtualenv that runs pytest, a raw line client like telnet, and a tree
comparison that says what differs.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.helpers import free_port, wait_for

BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """Absolute path of one of our console commands in the running venv."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: pip install -e . into the venv")
    return str(path)


class Proc:
    """A running command whose merged output is collected line by line."""

    def __init__(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> None:
        self.argv = [*prefix, *argv]
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def count(self, needle: str) -> int:
        with self._lock:
            return sum(needle in line for line in self.lines)

    def wait_line(self, needle: str, timeout: float = 20.0, count: int = 1) -> None:
        """Wait until ``needle`` has appeared in ``count`` lines of output."""

        def seen() -> bool:
            if self.popen.poll() is not None and self.count(needle) < count:
                self._reader.join(2)
                if self.count(needle) < count:
                    raise AssertionError(
                        f"{self.argv[0]} exited {self.popen.returncode} before "
                        f"printing {needle!r}:\n{self.output()}"
                    )
            return self.count(needle) >= count

        try:
            wait_for(seen, timeout, 0.02, f"{needle!r} from {Path(self.argv[0]).name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output ---\n{self.output()}") from None

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        finally:
            self._reader.join(2)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(2)


def fs_info(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command("fs_info"), *args], capture_output=True, text=True, timeout=30)


class Worker:
    """A mirrord on loopback watching one identity of include roots."""

    def __init__(
        self,
        datadir: Path,
        includes: Sequence[Path],
        excludes: Sequence[Path] = (),
        options: Sequence[str] = (),
        prefix: Sequence[str] = (),
        bind: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.datadir = datadir
        self.port = port or free_port()
        self.bind = bind
        args = ["-o", f"datadir={datadir}"]
        for inc in includes:
            args += ["-a", f"t:{inc}"]
        for exc in excludes:
            args += ["-a", f"x:{exc}"]
        if includes:
            done = fs_info(*args)
            assert done.returncode == 0, done.stderr
        self.argv = [
            command("mirrord"),
            "-o",
            f"datadir={datadir}",
            "-o",
            f"bind={bind}",
            "-o",
            f"port={self.port}",
            *options,
        ]
        self.prefix = prefix
        self.proc: Proc | None = None

    def start(self, timeout: float = 60.0) -> Proc:
        self.proc = Proc(self.argv, prefix=self.prefix)
        self.proc.wait_line("boot init finished", timeout)
        return self.proc

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.stop()

    def client(self) -> LineClient:
        return LineClient(self.bind, self.port)


class LineClient:
    """A raw TCP client speaking lines, as `telnet` or `nc` would."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, line: bytes, end: bytes = b"\n") -> None:
        self.sock.sendall(line + end)

    def recv_line(self, timeout: float = 10.0) -> bytes | None:
        """The next line without its CRLF, or None when the server closed."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line within {timeout}s; have {self.buf[:200]!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def lines_until(self, last: bytes, timeout: float = 30.0) -> list[bytes]:
        """Lines up to and including the first equal to ``last``."""
        out = []
        while True:
            line = self.recv_line(timeout)
            assert line is not None, f"closed before {last!r}; got {out[-5:]!r}"
            out.append(line)
            if line == last:
                return out

    def closed(self, timeout: float = 10.0) -> bool:
        """True once the server has closed the connection (after any pending lines)."""
        try:
            while True:
                if self.recv_line(timeout) is None:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()


def tree_entries(root: Path) -> Iterator[tuple[str, str, object, int]]:
    """(relative path, kind, content-or-target, mode bits) for every entry under root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                yield rel, "link", os.readlink(full), 0
            elif stat.S_ISDIR(st.st_mode):
                yield rel, "dir", None, stat.S_IMODE(st.st_mode)
            elif stat.S_ISREG(st.st_mode):
                yield rel, "file", Path(full).read_bytes(), stat.S_IMODE(st.st_mode)


def tree_diff(source: Path, mirror: Path, *, modes: bool = True) -> list[str]:
    """What differs between the worker's tree and the mirror's copy of it."""
    a = {rel: rest for rel, *rest in tree_entries(source)}
    b = {rel: rest for rel, *rest in tree_entries(mirror)} if mirror.exists() else {}
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            problems.append(f"missing in mirror: {rel}")
        elif rel not in a:
            problems.append(f"extra in mirror: {rel}")
        else:
            (ka, ca, ma), (kb, cb, mb) = a[rel], b[rel]
            if ka != kb:
                problems.append(f"type {ka} != {kb}: {rel}")
            elif ca != cb:
                problems.append(f"content differs: {rel}")
            elif modes and ma != mb:
                problems.append(f"mode {oct(ma)} != {oct(mb)}: {rel}")
    return problems


def mirror_of(datadir: Path, source: Path) -> Path:
    """Where fs_mirror keeps worker path ``source`` under its datadir."""
    return datadir / str(source).lstrip("/")


def wait_converged(source: Path, datadir: Path, timeout: float = 30.0, modes: bool = True) -> None:
    """Wait until the mirror equals the source tree; fail listing what differs."""
    last: list[str] = []

    def same() -> bool:
        nonlocal last
        try:
            last = tree_diff(source, mirror_of(datadir, source), modes=modes)
        except (FileNotFoundError, NotADirectoryError) as exc:  # tree changing under us
            last = [str(exc)]
        return not last

    try:
        wait_for(same, timeout, 0.05, "mirror to converge")
    except AssertionError:
        raise AssertionError("mirror differs:\n" + "\n".join(last[:30])) from None


# -- replaying the protocol into a model (mirrord end-to-end tests) ---------------

Model = dict[bytes, tuple[str, bytes | None, int | None]]  # path -> (kind, link target, size)


def _below(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top.rstrip(b"/") + b"/")


def disk_model(roots: Sequence[Path | bytes], excludes: Sequence[Path | bytes] = ()) -> Model:
    """The worker's trees as a replayed client should see them (never following links)."""
    excl = [os.fsencode(x) for x in excludes]
    out: Model = {}

    def add(path: bytes) -> bool:
        if any(_below(path, x) for x in excl):
            return False
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[path] = ("link", os.readlink(path), None)
        elif stat.S_ISDIR(st.st_mode):
            out[path] = ("dir", None, None)
            return True
        elif stat.S_ISREG(st.st_mode):
            out[path] = ("file", None, st.st_size)
        return False

    for root in roots:
        stack = [os.fsencode(root)]
        while stack:
            path = stack.pop()
            if add(path):
                stack += [os.path.join(path, n) for n in os.listdir(path)]
    return out


def model_diff(model: Model, disk: Model) -> list[str]:
    """What a replayed model has wrong, compared with the disk."""
    problems = []
    for path in sorted(set(model) | set(disk)):
        if path not in disk:
            problems.append(f"extra in model: {path!r} {model[path]}")
        elif path not in model:
            problems.append(f"missing in model: {path!r} {disk[path]}")
        elif model[path] != disk[path]:
            problems.append(f"differs: {path!r} model {model[path]} disk {disk[path]}")
    return problems


class Replay:
    """A protocol client applying INIT and every later record to an in-memory tree.

    ``received`` keeps (serial, line) for each record after INIT, so tests can
    check serials; the model follows the contract's meaning of each record.
    """

    def __init__(self, client: LineClient) -> None:
        self.client = client
        self.model: Model = {}
        self.session = ""
        self.serial = 0
        self.received: list[tuple[int, bytes]] = []
        self.problems: list[str] = []
        self._batch: list[bytes] = []
        self._batch_serial: int | None = None
        self._next_sent = False

    # protocol ---------------------------------------------------------------
    def start(self) -> None:
        self.client.send(b"START")
        reply = self.client.recv_line()
        assert reply == b"OK", reply

    def init(self) -> Replay:
        self.start()
        self.client.send(b"INIT")
        lines = self.client.lines_until(b"EOF", timeout=60)
        assert lines[0].startswith(b"SESSION:"), lines[:3]
        assert lines[1].startswith(b"SERIAL:"), lines[:3]
        self.session = lines[0].split(b":", 1)[1].decode()
        self.serial = int(lines[1].split(b":", 1)[1])
        for line in lines[2:-1]:
            self.apply(line)
        return self

    def resume(self, session: str, serial: int) -> bytes | None:
        """SN:session,serial; returns the reply line (b"OK" on success)."""
        self.start()
        self.client.send(f"SN:{session},{serial}".encode())
        reply = self.client.recv_line()
        if reply == b"OK":
            self.session, self.serial = session, serial
        return reply

    def pump(self, timeout: float = 0.3) -> bool:
        """Keep one NEXT outstanding; True once a whole batch has been applied."""
        if not self._next_sent:
            self.client.send(b"NEXT")
            self._next_sent = True
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                line = self.client.recv_line(remaining)
            except TimeoutError:
                return False
            assert line is not None, "server closed the connection"
            if line.startswith(b"SERIAL:") and self._batch_serial is None:
                self._batch_serial = int(line.split(b":", 1)[1])
            elif line == b"EOF":
                assert self._batch_serial is not None, "EOF without SERIAL"
                top, n = self._batch_serial, len(self._batch)
                assert top - n == self.serial, f"batch to {top} of {n} after {self.serial}"
                for i, rec in enumerate(self._batch):  # applied whole: model matches serial
                    self.apply(rec)
                    self.received.append((top - n + 1 + i, rec))
                self.serial, self._batch, self._batch_serial = top, [], None
                self._next_sent = False
                return True
            else:
                assert self._batch_serial is not None, f"record outside a batch: {line!r}"
                self._batch.append(line)

    def drain(self, quiet: float = 0.3, timeout: float = 15.0) -> None:
        """Apply batches until none comes for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while self.pump(quiet):
            assert time.monotonic() < deadline, "records kept coming"

    def converge(
        self,
        roots: Sequence[Path | bytes],
        excludes: Sequence[Path | bytes] = (),
        timeout: float = 15.0,
    ) -> None:
        """Wait until the model equals the disk; fail listing the differences."""
        deadline = time.monotonic() + timeout
        last: list[str] = []
        while True:
            got = self.pump(0.2)
            if not got:
                try:
                    tops = [os.fsencode(root) for root in roots]
                    mine = {p: v for p, v in self.model.items() if any(_below(p, t) for t in tops)}
                    last = model_diff(mine, disk_model(roots, excludes))
                except FileNotFoundError as exc:
                    last = [str(exc)]
                if not last:
                    assert not self.problems, "\n".join(self.problems[:20])
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"model differs after {timeout}s (serial {self.serial}):\n"
                    + "\n".join((self.problems + last)[:40])
                )

    # the model ----------------------------------------------------------------
    def _drop(self, path: bytes) -> None:
        for p in [p for p in self.model if _below(p, path)]:
            del self.model[p]

    def _parents(self, path: bytes) -> None:
        parent = os.path.dirname(path)
        while parent != b"/" and parent not in self.model:
            self.model[parent] = ("dir", None, None)
            parent = os.path.dirname(parent)

    def apply(self, line: bytes) -> None:
        from protocol.records import Action, Record

        rec = Record.decode(line)
        path, model = rec.path, self.model
        if rec.action is Action.CREATE:
            if model.get(path, ("",))[0] != "dir":
                self._drop(path)
            self._parents(path)
            model[path] = ("dir", None, None)
        elif rec.action is Action.FWRITE:
            self._drop(path)
            self._parents(path)
            model[path] = ("file", None, rec.meta.size)
        elif rec.action is Action.SYMLINK:
            self._drop(path)
            self._parents(path)
            model[path] = ("link", rec.target, None)
        elif rec.action is Action.DELETE:
            self._drop(path)
        elif rec.action is Action.MOVE:
            dst = rec.target
            assert dst is not None
            if path not in model:
                self.problems.append(f"MOVE of a path the client lacks: {line!r}")
                return
            moving = {p: v for p, v in model.items() if _below(p, path)}
            self._drop(path)
            self._drop(dst)
            self._parents(dst)
            for p, v in moving.items():
                model[dst + p[len(path) :]] = v
        elif rec.action is Action.ATTRIB:
            if path not in model:
                self.problems.append(f"ATTRIB of a path the client lacks: {line!r}")
            elif rec.meta.size is not None and model[path][0] == "file":
                model[path] = ("file", None, rec.meta.size)


def assert_clean_output(proc: Proc) -> None:
    """No traceback or unhandled error in a daemon's output."""
    out = proc.output()
    for bad in ("Traceback", "Unhandled"):
        assert bad not in out, f"{bad} in output:\n{out[-4000:]}"


def start_fs_mirror(
    worker: Worker, datadir: Path, *extra: str, kind: str = "local", verbose: bool = False
) -> Proc:
    """fs_mirror pulling from ``worker`` through the ``kind`` backend, retrying within 1 s."""
    return Proc([command("fs_mirror"), *(["-v"] if verbose else []),
                 "-o", f"host={worker.bind}", "-o", f"port={worker.port}",
                 "-o", f"fssync.type={kind}", "-o", "reconnect.max=1",
                 f"--datadir={datadir}", *extra])  # fmt: skip


# -- churn: a writer changing a tree at a steady pace (torture tests) ---------------


def stamped(body: bytes) -> bytes:
    """File content that proves itself whole: a first line with the body's length and sha256."""
    import hashlib

    return b"%d %s\n" % (len(body), hashlib.sha256(body).hexdigest().encode()) + body


def stamp_intact(data: bytes) -> bool:
    """True when ``data`` is a whole ``stamped`` content (never a torn or mixed write)."""
    import hashlib

    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 2 or not parts[0].isdigit():
        return False
    return int(parts[0]) == len(body) and hashlib.sha256(body).hexdigest().encode() == parts[1]


def churn(roots: Sequence[Path], stop: threading.Event, counts: dict[str, int], *,
          rate: float = 1000.0, files: int = 2000, dirs: int = 20, size: tuple[int, int] = (0, 512),
          seed: int = 7) -> None:  # fmt: skip
    """Change files under ``roots`` at ``rate`` operations a second until ``stop`` is set.

    Each operation picks one of ``files`` slots (spread over ``dirs`` directories) in one
    root and creates, overwrites, renames, chmods or deletes it; every content is
    ``stamped``. The pace is kept by the clock (the writer is a load, not a party to
    any synchronisation). ``counts`` is updated as it goes: ``ops`` and each kind.
    """
    import random

    rng = random.Random(seed)
    present: list[set[int]] = [set() for _ in roots]

    def where(root: Path, slot: int) -> Path:
        return root / f"d{slot % dirs:02d}" / f"f{slot:05d}"

    for root in roots:
        for d in range(dirs):
            (root / f"d{d:02d}").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = start + n / rate
        ahead = due - time.monotonic()
        if ahead > 0 and stop.wait(ahead):
            break
        r = rng.randrange(len(roots))
        root, have = roots[r], present[r]
        slot = rng.randrange(files)
        path = where(root, slot)
        roll = rng.random()
        if slot not in have or roll < 0.45:
            kind = "create" if slot not in have else "overwrite"
            path.write_bytes(stamped(rng.randbytes(rng.randint(*size))))
            have.add(slot)
        elif roll < 0.65:
            kind = "rename"
            other = rng.randrange(files)
            if other != slot:
                os.rename(path, where(root, other))
                have.discard(slot)
                have.add(other)
        elif roll < 0.75:
            kind = "chmod"
            os.chmod(path, rng.choice((0o600, 0o640, 0o644)))
        else:
            kind = "delete"
            path.unlink()
            have.discard(slot)
        n += 1
        counts["ops"] = n
        counts[kind] = counts.get(kind, 0) + 1
