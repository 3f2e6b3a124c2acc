"""What an operator reads from fs_mirror against a real mirrord: -v lines, report hooks, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    command,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for


def fs_mirror(worker: Worker, datadir: Path, *extra: str, kind: str = "local") -> Proc:
    return start_fs_mirror(worker, datadir, *extra, kind=kind)


def test_verbose_lines_name_each_applied_change(tmp_path: Path):
    """-v prints CREATE DIR, WRITE FILE, SYMLINK, ATTRIB, MOVE, DELETE FILE/DIR with PREFIX."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "old.txt").write_bytes(b"old")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-v")
    prefix = f", PREFIX '{backup}'"
    try:
        client.wait_line("init finished", 30)
        client.wait_line(f"CREATE DIR '{src}'{prefix}")
        client.wait_line(f"WRITE FILE '{src}/old.txt'{prefix}")
        (src / "d").mkdir()
        client.wait_line(f"CREATE DIR '{src}/d'{prefix}")
        (src / "d" / "f").write_bytes(b"data")
        client.wait_line(f"WRITE FILE '{src}/d/f'{prefix}")
        os.symlink("d/f", src / "ln")
        client.wait_line(f"SYMLINK '{src}/ln' -> 'd/f'{prefix}")
        os.chmod(src / "old.txt", 0o600)
        client.wait_line(f"ATTRIB '{src}/old.txt'{prefix}")
        os.rename(src / "old.txt", src / "new.txt")
        client.wait_line(f"MOVE '{src}/old.txt' -> '{src}/new.txt'{prefix}")
        os.unlink(src / "new.txt")
        client.wait_line(f"DELETE FILE '{src}/new.txt'{prefix}")
        os.unlink(src / "d" / "f")
        os.rmdir(src / "d")
        client.wait_line(f"DELETE DIR '{src}/d'{prefix}")
        wait_converged(src, backup)
    finally:
        assert client.stop() == 0
        w.stop()
    assert_clean_output(client)


HOOK = """#!/bin/sh
out="$1/$FSM_SERIAL-$$"
env | grep '^FSM_' | sort > "$out.tmp"
mv "$out.tmp" "$out"
"""


def test_report_exec_runs_the_hook_per_change_with_its_environment(tmp_path: Path):
    """report.exec runs a program (argv, no shell) per change with FSM_* set; JSON lines parse."""
    src = tmp_path / "usr-bin"
    src.mkdir()
    (src / "sshd").write_bytes(b"\x7fELF")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    hook = tmp_path / "hook dir" / "alert.sh"  # a space: argv is split like a shell line
    hook.parent.mkdir()
    hook.write_text(HOOK)
    hook.chmod(0o755)
    seen = tmp_path / "seen"
    seen.mkdir()
    backup = tmp_path / "ids"
    client = fs_mirror(
        w,
        backup,
        "-o",
        "report.format=json",
        "-o",
        f"report.exec='{hook}' '{seen}'",
        kind="report",
    )
    try:
        client.wait_line("init finished", 30)
        os.chmod(src / "sshd", 0o4755)

        def hook_saw() -> dict[str, str] | None:
            for name in os.listdir(seen):
                if name.endswith(".tmp"):
                    continue
                env = dict(line.split("=", 1) for line in (seen / name).read_text().splitlines())
                if env.get("FSM_ACTION") == "ATTRIB":
                    return env
            return None

        env = wait_for(hook_saw, 10, 0.02, "the hook's ATTRIB report")
        assert env["FSM_PATH"] == f"{src}/sshd"
        assert int(env["FSM_MODE"], 8) & 0o7777 == 0o4755
        assert int(env["FSM_SERIAL"]) >= 1
        reports = [json.loads(line[line.index("{") :]) for line in client.lines if "{" in line]
        assert any(r.get("action") == "ATTRIB" for r in reports), reports
        assert not mirror_of(backup, src).exists()
    finally:
        assert client.stop() == 0
        w.stop()


def run(*args: str, datadir: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [command("fs_mirror"), *args]
    if datadir is not None:
        argv.append(f"--datadir={datadir}")
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_missing_host_exits_2_naming_it(tmp_path: Path):
    """Without host fs_mirror exits 2 with one line naming the key."""
    done = run("-o", "fssync.type=local", datadir=tmp_path / "d")
    assert done.returncode == 2
    assert "host" in one_line(done)


def test_bogus_backend_exits_2_naming_it(tmp_path: Path):
    """fssync.type=bogus exits 2 with one line naming the key and the bad value."""
    done = run("-o", "host=127.0.0.1", "-o", "fssync.type=bogus", datadir=tmp_path / "d")
    assert done.returncode == 2
    line = one_line(done)
    assert "fssync.type" in line and "bogus" in line


def test_unknown_key_exits_2_naming_it(tmp_path: Path):
    """An unknown -o key exits 2 naming it, and so does one in a -c file."""
    base = ("-o", "host=127.0.0.1", "-o", "fssync.type=local")
    done = run(*base, "-o", "fssync.speed=fast", datadir=tmp_path / "d")
    assert done.returncode == 2
    assert "fssync.speed" in one_line(done)
    conf = tmp_path / "fs_mirror.conf"
    conf.write_text("host = 127.0.0.1\nfssync.type = local\ncolour = blue\n")
    done = run("-c", str(conf), datadir=tmp_path / "d")
    assert done.returncode == 2
    assert "colour" in one_line(done)


def test_group_readable_secrets_file_exits_2_naming_it(tmp_path: Path):
    """A secrets file readable by its group exits 2 naming the file."""
    keys = tmp_path / "secrets"
    keys.write_text("mirror sesame\n")
    keys.chmod(0o640)
    done = run(
        "-o",
        "host=127.0.0.1",
        "-o",
        "fssync.type=local",
        "-o",
        f"auth.secret-from={keys}:mirror",
        datadir=tmp_path / "d",
    )
    assert done.returncode == 2
    assert str(keys) in one_line(done)


def test_unwritable_datadir_exits_1_saying_what_to_do(tmp_path: Path):
    """A datadir fs_mirror cannot create exits 1 with a message naming it and what to do."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"a file where a directory should be")
    done = run("-o", "host=127.0.0.1", "-o", "fssync.type=local", datadir=blocker / "d")
    assert done.returncode == 1, done.stderr
    assert str(blocker) in done.stderr and "--datadir" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_datadir_as_another_user_exits_1(tmp_path: Path):
    """A datadir the user may not write (run as nobody) exits 1 saying which and what to do."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run fs_mirror as another user (CI runs as root)")
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", ""],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:  # e.g. an interpreter under /root that nobody cannot load
        pytest.skip(f"this Python cannot run as nobody: {probe.stderr.strip()[:200]}")
    top = Path(tempfile.mkdtemp(prefix="fsm-perm-"))  # pytest's tmp dirs are root-only
    top.chmod(0o711)
    data = top / "locked"
    data.mkdir(mode=0o700)
    try:
        done = _as_nobody(data)
    finally:
        shutil.rmtree(top)
    assert done.returncode == 1, done.stderr
    assert str(data) in done.stderr and "writable by the user" in done.stderr
    assert "Traceback" not in done.stderr


def _as_nobody(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            command("fs_mirror"), "-o", "host=127.0.0.1", "-o", "fssync.type=local",
            f"--datadir={data}",
        ],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip


class PtyProc:
    """A command whose stdout and stderr are a pseudo-terminal, as under a person's shell."""

    def __init__(self, argv: list[str]) -> None:
        import pty
        import threading

        master, slave = pty.openpty()
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.data = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            self.data += chunk

    def stop(self) -> int:
        self.popen.send_signal(15)
        code = self.popen.wait(20)
        self.reader.join(5)
        os.close(self.master)
        return code


def init_tree(src: Path, count: int) -> None:
    for d in range(count // 100):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (src / f"d{d}" / f"f{f}").write_bytes(b"x" * 1000)


def test_init_progress_on_a_terminal_and_only_a_summary_in_a_log(tmp_path: Path):
    """On a tty INIT draws a records/bytes/rate status line; in a pipe only the summary appears."""
    src = tmp_path / "src"
    init_tree(src, 2000)
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    argv = [
        command("fs_mirror"),
        "-o",
        f"host={w.bind}",
        "-o",
        f"port={w.port}",
        "-o",
        "fssync.type=local",
    ]
    tty = PtyProc([*argv, f"--datadir={tmp_path / 'on-tty'}"])
    try:
        wait_for(lambda: b"init finished" in tty.data, 30, 0.05, "init finished on the tty")
    finally:
        assert tty.stop() == 0
        piped = Proc([*argv, f"--datadir={tmp_path / 'in-log'}"])
        try:
            piped.wait_line("init finished", 30)
        finally:
            assert piped.stop() == 0
            w.stop()
    shown = tty.data.decode("utf-8", "replace")
    assert "\r\x1b[KINIT: " in shown, shown[-2000:]
    status = re.search(
        r"\r\x1b\[KINIT: (\d+) records, (\d+) files, [\d.]+ (B|KiB|MiB) in \d+s"
        r" \(\d+ records/s, [\d.]+ (B|KiB|MiB)/s\)\r",
        shown,
    )
    assert status and int(status.group(1)) > 0, shown[-2000:]
    assert "init finished:" in shown.split(status.group(0))[-1]  # cleared, then the summary
    logged = piped.output()
    assert "INIT: " not in logged and "\x1b[K" not in logged
    summary = [line for line in logged.splitlines() if "init finished:" in line]
    assert len(summary) == 1 and "2000 files" in summary[0] and "records/s" in summary[0]
