"""A worker and a backup mirror on this machine, showing a change arrive.

``python -m mirrord.quickstart`` runs the real commands, printing each one as
a shell line so a newcomer can repeat them by hand: fs_info names a sample
tree, mirrord serves it (with its embedded read-only FTP service on
loopback), fs_mirror copies it into a second directory, then a file is
written in the source and the time until it is complete in the mirror is
shown.  Everything lives in one temporary directory, removed at the end
unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _show(argv: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)


class _Daemon:
    """A command in the background whose output is echoed with a prefix."""

    def __init__(self, name: str, argv: list[str]) -> None:
        _show(argv)
        self.name = name
        self.seen: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            print(f"  [{self.name}] {line.rstrip()}", flush=True)
            with self.cond:
                self.seen.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(needle in line for line in self.seen):
                left = deadline - time.monotonic()
                if self.proc.poll() is not None or left <= 0:
                    raise SystemExit(f"quickstart: {self.name} did not print {needle!r}")
                self.cond.wait(min(left, 0.5))

    def serving(self, timeout: float) -> bool:
        """True once mirrord says it serves; False if it exited first."""
        try:
            self.wait_for("boot init finished", timeout)
        except SystemExit:
            return False
        return True

    def said(self, needle: str) -> bool:
        """True when a line of the output so far holds ``needle``."""
        with self.cond:
            return any(needle in line for line in self.seen)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _wait_file(path: Path, content: bytes, timeout: float) -> float:
    """Seconds until ``path`` holds ``content``; polls with a deadline."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if path.read_bytes() == content:
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"quickstart: {path} did not arrive within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="mirrord-quickstart-"))
    src, data, mirror = top / "worker" / "www", top / "mirrord", top / "backup"
    (src / "html" / "css").mkdir(parents=True)
    (src / "html" / "index.html").write_text("<h1>hello from the worker</h1>\n")
    (src / "html" / "css" / "site.css").write_text("h1 { color: teal }\n")
    (src / "cache").mkdir()
    (src / "cache" / "session-123").write_text("not worth mirroring\n")
    secrets = top / "secrets"
    secrets.write_text("ftp quickstart-" + os.urandom(6).hex() + "\n")
    secrets.chmod(0o600)
    port, ftp_port = _free_port(), _free_port()
    print(f"Sample tree in {src}; everything under {top}\n", flush=True)

    fs_info = [
        str(BIN / "fs_info"),
        "-o",
        f"datadir={data}",
        "-a",
        f"t:{src}",
        "-a",
        f"x:{src / 'cache'}",
    ]
    _show(fs_info)
    subprocess.run(fs_info, check=True)
    worker = backup = None
    codes: list[int] = []
    try:
        for _attempt in range(3):  # a port picked free can be taken before mirrord binds it
            worker = _Daemon(
                "mirrord",
                [
                    str(BIN / "mirrord"),
                    "-o",
                    f"datadir={data}",
                    "-o",
                    "bind=127.0.0.1",
                    "-o",
                    f"port={port}",
                    "-o",
                    f"ftp.port={ftp_port}",
                    "-o",
                    "ftp.user=mirror",
                    "-o",
                    f"ftp.password-from={secrets}:ftp",
                ],
            )
            if worker.serving(60):
                break
            worker.stop()
            if not worker.said("cannot listen"):
                raise SystemExit("quickstart: mirrord did not start (see its output above)")
            port, ftp_port = _free_port(), _free_port()
        else:
            raise SystemExit("quickstart: mirrord could not get a free port (see above)")
        backup = _Daemon(
            "fs_mirror",
            [
                str(BIN / "fs_mirror"),
                "-v",
                "-o",
                "host=127.0.0.1",
                "-o",
                f"port={port}",
                "-o",
                "fssync.type=ftp",
                "-o",
                f"fssync.port={ftp_port}",
                "-o",
                "fssync.user=mirror",
                f"--password-from={secrets}:ftp",
                f"--datadir={mirror}",
            ],
        )
        backup.wait_for("init finished", 60)
        copy = mirror / str(src).lstrip("/")
        print(f"\nThe mirror now holds {copy}:", flush=True)
        for path in sorted(copy.rglob("*")):
            print(f"  {path.relative_to(mirror)}", flush=True)
        content = f"<h1>changed at {time.strftime('%H:%M:%S')}</h1>\n".encode()
        print(f"\nWriting {src / 'html' / 'index.html'} on the worker ...", flush=True)
        (src / "html" / "index.html").write_bytes(content)
        took = _wait_file(copy / "html" / "index.html", content, 30)
        print(f"\nThe change arrived in the mirror after {took * 1000:.0f} ms:", flush=True)
        print("  " + (copy / "html" / "index.html").read_text().strip(), flush=True)
        print(
            f"  (the excluded {src / 'cache'} is not mirrored: "
            f"{'present!' if (copy / 'cache').exists() else 'absent'})",
            flush=True,
        )
    finally:
        codes = [d.stop() for d in (backup, worker) if d is not None]
        if not args.keep:  # also when a daemon failed: nothing left behind in /tmp
            shutil.rmtree(top, ignore_errors=True)
    print(f"\nBoth stopped (exit {codes}). Quick start finished.", flush=True)
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
