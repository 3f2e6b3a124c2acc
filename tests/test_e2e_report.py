"""Report mode as a tripwire against a real mirrord: baseline, live changes, a lost database."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.daemons import Proc, Worker, assert_clean_output, command, start_fs_mirror

LINE = re.compile(r"^(\S+) (\w+) '([^']*)'(?: -> '[^']*')?(.*)$")


def report_lines(proc: Proc, action: str, path: Path) -> list[dict[str, str]]:
    """The fields of each report line for ``action`` on ``path`` (``time`` included)."""
    found = []
    for line in proc.lines:
        m = LINE.match(line)
        if m and m.group(2) == action and m.group(3) == str(path):
            fields = dict(f.split("=", 1) for f in m.group(4).split())
            found.append({"time": m.group(1), **fields})
    return found


def tripwire(w: Worker, datadir: Path, *extra: str) -> Proc:
    return start_fs_mirror(w, datadir, *extra, kind="report")


def make_tree(src: Path) -> None:
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_bytes(b"root:x:0:0\n")
    (src / "etc" / "shadow").write_bytes(b"root:*:1\n")
    (src / "bin").mkdir()
    (src / "bin" / "sshd").write_bytes(b"\x7fELF")


def test_baseline_is_one_line_and_later_changes_carry_serial_and_time(tmp_path: Path):
    """The first full sync prints one baseline line, no change lines; a later change is
    reported with its own serial (one per record) and the worker's mtime."""
    src = tmp_path / "src"
    make_tree(src)
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    ids = tmp_path / "ids"
    client = tripwire(w, ids)
    try:
        client.wait_line("baseline: 6 entries recorded at serial", 30)
        assert not report_lines(client, "FWRITE", src / "etc" / "passwd"), client.output()
        assert not report_lines(client, "CREATE", src), client.output()
        (src / "etc" / "cron").write_bytes(b"* * * * * evil\n")
        os.utime(src / "etc" / "cron", ns=(1_700_000_000_500_000_000,) * 2)
        os.chmod(src / "bin" / "sshd", 0o4755)
        client.wait_line(f"ATTRIB '{src}/bin/sshd'", 20)
        writes = report_lines(client, "FWRITE", src / "etc" / "cron")
        attrib = report_lines(client, "ATTRIB", src / "bin" / "sshd")[0]
        assert writes and attrib["mode"] == "4755"
        serials = [int(r["serial"]) for r in writes] + [int(attrib["serial"])]
        assert serials == sorted(set(serials)), client.output()  # each record its own serial
        assert all("found" not in r for r in (*writes, attrib))
        assert any(r.get("mtime") == "1700000000.5" for r in writes), client.output()
        assert (ids / ".fs_mirror.d" / "report-baseline").is_dir()
    finally:
        assert client.stop() == 0
        w.stop()
    assert_clean_output(client)


def test_lost_mirrord_database_reports_only_the_differences(tmp_path: Path):
    """mirrord restarted on a new database: the new full sync is compared with the baseline
    (which followed the live changes) and only created, deleted and changed entries print."""
    src = tmp_path / "src"
    make_tree(src)
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    ids = tmp_path / "ids"
    client = tripwire(w, ids)
    w2: Worker | None = None
    try:
        client.wait_line("baseline: 6 entries recorded", 30)
        (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")  # live: into the baseline
        client.wait_line(f"FWRITE '{src}/etc/hosts'", 20)
        assert w.stop() == 0
        shutil.rmtree(tmp_path / "mirrord")  # the database is lost
        (src / "etc" / "shadow").unlink()
        (src / "bin" / "sshd").write_bytes(b"\x7fELF trojan")  # another size
        (src / "bin" / "nc").write_bytes(b"backdoor")
        w2 = Worker(tmp_path / "mirrord", [src], port=w.port)
        w2.start()
        client.wait_line("full-sync: 7 entries compared with the baseline", 60)
        out = client.output()
        assert "1 created, 1 deleted, 1 changed" in out, out
        nc = report_lines(client, "FWRITE", src / "bin" / "nc")
        assert len(nc) == 1 and nc[0]["found"] == "created", out
        sshd = report_lines(client, "FWRITE", src / "bin" / "sshd")
        assert len(sshd) == 1 and sshd[0]["found"] == "changed" and sshd[0]["was.size"] == "4"
        gone = report_lines(client, "DELETE", src / "etc" / "shadow")
        assert len(gone) == 1 and gone[0]["found"] == "deleted", out
        found = [line for line in client.lines if " found=" in line]
        assert len(found) == 3, out  # passwd, hosts (followed live) and the dirs: unchanged
    finally:
        assert client.stop() == 0
        (w2 or w).stop()
    assert_clean_output(client)


def test_syslog_that_cannot_be_reached_refuses_to_start(tmp_path: Path):
    """report.syslog=yes with no syslog socket is an error at start naming the key."""
    nowhere = tmp_path / "no-syslog" / "log"
    done = subprocess.run(
        [command("fs_mirror"), "-o", "host=127.0.0.1", "-o", "fssync.type=report",
         "-o", "report.syslog=yes", "-o", f"report.syslog.socket={nowhere}",
         f"--datadir={tmp_path / 'ids'}"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert "report.syslog" in done.stderr and str(nowhere) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hash_shows_whether_content_really_changed(tmp_path: Path):
    """report.hash=sha256 through report.fetch=local: a write shows the new hash and the
    baseline's; a rewrite of the same bytes shows no old one; and a full sync finds a file
    whose content changed behind the same size and mtime."""
    src = tmp_path / "src"
    make_tree(src)
    passwd = src / "etc" / "passwd"
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    hashing = ("-o", "report.hash=sha256", "-o", "report.fetch=local")
    client = tripwire(w, tmp_path / "ids", *hashing)
    w2: Worker | None = None
    try:
        client.wait_line("baseline: 6 entries recorded", 30)
        old = passwd.read_bytes()
        passwd.write_bytes(b"root:x:0:0\nevil:x:0:0\n")
        client.wait_line(f"FWRITE '{passwd}'", 20)
        line = report_lines(client, "FWRITE", passwd)[-1]
        assert line["sha256"] == sha256(passwd.read_bytes()) and line["was.sha256"] == sha256(old)
        passwd.write_bytes(passwd.read_bytes())  # the same bytes again
        client.wait_line(f"FWRITE '{passwd}'", 20, count=2)
        again = report_lines(client, "FWRITE", passwd)[-1]
        assert again["sha256"] == line["sha256"] and "was.sha256" not in again
        assert w.stop() == 0
        shutil.rmtree(tmp_path / "mirrord")
        sshd = src / "bin" / "sshd"
        st = sshd.stat()
        sshd.write_bytes(b"\x7fELG")  # same size ...
        os.utime(sshd, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and mtime: only the hash tells
        w2 = Worker(tmp_path / "mirrord", [src], port=w.port)
        w2.start()
        client.wait_line("full-sync:", 60)
        assert "0 created, 0 deleted, 1 changed" in client.output(), client.output()
        found = report_lines(client, "FWRITE", sshd)
        assert len(found) == 1 and found[0]["found"] == "changed", client.output()
        assert found[0]["was.sha256"] == sha256(b"\x7fELF")
        assert found[0]["sha256"] == sha256(b"\x7fELG")
        assert not list((tmp_path / "ids" / ".fs_mirror.d" / "tmp" / "hash").iterdir())
    finally:
        assert client.stop() == 0
        (w2 or w).stop()
    assert_clean_output(client)


def test_hash_without_a_fetch_backend_is_refused(tmp_path: Path):
    """report.hash needs report.fetch: report mode has no file contents of its own."""
    done = subprocess.run(
        [command("fs_mirror"), "-o", "host=127.0.0.1", "-o", "fssync.type=report",
         "-o", "report.hash=sha256", f"--datadir={tmp_path / 'ids'}"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0 and "report.hash" in done.stderr and "report.fetch" in done.stderr
