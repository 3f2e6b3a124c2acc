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
