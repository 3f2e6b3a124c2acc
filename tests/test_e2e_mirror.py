"""A real mirrord and a real fs_mirror on loopback converge, resume and stay confined."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemons import Proc, Worker, command, mirror_of, wait_converged
from tests.helpers import wait_for


def sample_tree(src: Path) -> None:
    (src / "etc" / "conf.d").mkdir(parents=True)
    (src / "bin").mkdir()
    (src / "etc" / "main.conf").write_bytes(b"key = value\n")
    (src / "etc" / "conf.d" / "x.conf").write_bytes(b"x\n")
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o755)
    os.symlink("../etc/main.conf", src / "bin" / "conf-link")
    (src / b"caf\xe9-latin1".decode("utf-8", "surrogateescape")).write_bytes(b"not utf-8 name")
    (src / "tab\tand%percent").write_bytes(b"odd name")


def fs_mirror(worker: Worker, datadir: Path, *extra: str) -> Proc:
    return Proc(
        [
            command("fs_mirror"),
            "-v",
            "-o",
            f"host={worker.bind}",
            "-o",
            f"port={worker.port}",
            "-o",
            "fssync.type=local",
            f"--datadir={datadir}",
            *extra,
        ]
    )


@pytest.fixture
def pair(tmp_path: Path):
    src = tmp_path / "worker" / "srv"
    src.mkdir(parents=True)
    sample_tree(src)
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    mirror_dir = tmp_path / "backup"
    client = fs_mirror(w, mirror_dir)
    client.wait_line("init finished", 60)
    yield w, src, mirror_dir, client
    client.stop()
    w.stop()


def test_init_copies_the_tree(pair):
    """After INIT the mirror equals the worker's tree: types, contents, links, modes."""
    _, src, mirror_dir, client = pair
    wait_converged(src, mirror_dir)
    assert (mirror_dir / "sn").read_text().count(",") == 1
    assert "PREFIX" in client.output()


def test_live_changes_arrive(pair):
    """Creates, writes, chmod, symlink retarget, moves and deletes are replayed."""
    _, src, mirror_dir, _ = pair
    (src / "new" / "deep").mkdir(parents=True)
    (src / "new" / "deep" / "f").write_bytes(b"fresh")
    (src / "etc" / "main.conf").write_bytes(b"key = changed\n")
    os.chmod(src / "etc" / "main.conf", 0o600)
    os.unlink(src / "bin" / "conf-link")
    os.symlink("tool", src / "bin" / "conf-link")
    os.rename(src / "etc" / "conf.d", src / "etc" / "conf.moved")
    (src / "etc" / "conf.moved" / "y.conf").write_bytes(b"written after the move")
    os.unlink(src / "bin" / "tool")
    wait_converged(src, mirror_dir)


def test_resume_after_restart_without_full_resync(pair, tmp_path):
    """fs_mirror stopped and restarted resumes with SN: no second INIT."""
    w, src, mirror_dir, client = pair
    assert client.stop() == 0
    (src / "while-down.txt").write_bytes(b"made while the mirror was down")
    again = fs_mirror(w, mirror_dir)
    try:
        wait_converged(src, mirror_dir)
        assert "init finished" not in again.output()
    finally:
        assert again.stop() == 0


def test_second_instance_on_same_datadir_refused(pair):
    """A second fs_mirror on the same datadir exits with an error instead of running."""
    w, _, mirror_dir, _ = pair
    second = fs_mirror(w, mirror_dir)
    assert second.popen.wait(20) != 0
    second._reader.join(2)
    assert "sn" in second.output() or "lock" in second.output().lower()


def test_mirrord_restart_is_survived(pair):
    """When mirrord restarts, fs_mirror reconnects by itself and resumes."""
    w, src, mirror_dir, client = pair
    assert w.stop() == 0
    (src / "during-restart").write_bytes(b"x")
    w.start()
    (src / "after-restart").write_bytes(b"y")
    wait_converged(src, mirror_dir, timeout=60)
    assert client.count("init finished") == 1


def test_kill_9_of_fs_mirror_resumes(pair):
    """fs_mirror killed mid-stream resumes with SN and converges; no temp files stay."""
    w, src, mirror_dir, client = pair
    for i in range(300):
        (src / f"burst-{i}").write_bytes(os.urandom(2000))
    client.popen.send_signal(signal.SIGKILL)
    client.popen.wait(10)
    again = fs_mirror(w, mirror_dir)
    try:
        wait_converged(src, mirror_dir, timeout=60)
        assert "init finished" not in again.output()
        leftovers = [p for p in mirror_of(mirror_dir, src).rglob("*") if ".fsm-" in p.name]
        assert leftovers == []
    finally:
        again.stop()


def test_kill_9_of_mirrord_during_heavy_change(tmp_path):
    """mirrord SIGKILLed while files churn restarts on its database; the client resumes."""
    src = tmp_path / "src"
    src.mkdir()
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    mirror_dir = tmp_path / "backup"
    client = fs_mirror(w, mirror_dir)
    client.wait_line("init finished", 60)
    try:
        for i in range(200):
            (src / f"d{i % 10}").mkdir(exist_ok=True)
            (src / f"d{i % 10}" / f"f{i}").write_bytes(os.urandom(100))
        w.proc.kill()
        for i in range(200, 260):
            (src / f"late{i}").write_bytes(b"after kill")
        w.start()
        wait_converged(src, mirror_dir, timeout=90)
        assert client.count("init finished") == 1
    finally:
        client.stop()
        w.stop()


def test_excluded_subtree_never_mirrored(tmp_path):
    """An excluded sub-tree is neither sent at INIT nor when created later."""
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "big").write_bytes(b"skip me")
    (src / "cache2").mkdir()
    (src / "cache2" / "keep").write_bytes(b"keep me")
    w = Worker(tmp_path / "mirrord", [src], excludes=[src / "cache"])
    w.start()
    mirror_dir = tmp_path / "backup"
    client = fs_mirror(w, mirror_dir)
    try:
        client.wait_line("init finished", 60)
        (src / "cache" / "later").write_bytes(b"no")
        (src / "cache2" / "later").write_bytes(b"yes")
        dst = mirror_of(mirror_dir, src)
        wait_for(lambda: (dst / "cache2" / "later").exists(), 20, message="cache2/later")
        assert not (dst / "cache").exists()
    finally:
        client.stop()
        w.stop()


def test_unreachable_mirrord_is_not_silent(tmp_path):
    """With mirrord down, fs_mirror says it cannot connect and keeps retrying."""
    from tests.helpers import free_port

    port = free_port()
    client = Proc(
        [
            command("fs_mirror"),
            "-o",
            "host=127.0.0.1",
            "-o",
            f"port={port}",
            "-o",
            "fssync.type=local",
            "-o",
            "reconnect.max=0.5",
            f"--datadir={tmp_path / 'backup'}",
        ]
    )
    try:
        client.wait_line(f"no connection to mirrord at 127.0.0.1:{port}", 20, count=2)
        assert client.popen.poll() is None
    finally:
        assert client.stop() == 0
