"""SIGHUP reloads, never kills (contract 6), on real processes."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.daemons import Worker, fs_info, mirror_of, start_fs_mirror, wait_converged
from tests.helpers import wait_for


def test_sighup_makes_mirrord_serve_what_fs_info_changed(tmp_path: Path) -> None:
    """fs_info adds an include and excludes a sub-tree while mirrord runs; after SIGHUP
    the new tree reaches the mirror and the excluded one leaves it; both daemons live
    through a SIGHUP and stop with 0."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "private").mkdir(parents=True)
    (first / "private" / "key").write_bytes(b"k")
    (first / "a").write_bytes(b"a")
    second.mkdir()
    (second / "b").write_bytes(b"b")
    w = Worker(tmp_path / "data", [first])
    w.start()
    datadir = tmp_path / "mirror"
    client = start_fs_mirror(w, datadir)
    try:
        client.wait_line("init finished", 30)
        assert (mirror_of(datadir, first) / "private" / "key").exists()
        for entry in (f"t:{second}", f"x:{first / 'private'}"):
            done = fs_info("-o", f"datadir={w.datadir}", "-a", entry)
            assert done.returncode == 0, done.stderr
        w.proc.popen.send_signal(signal.SIGHUP)
        client.popen.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (mirror_of(datadir, second) / "b").exists(),
            timeout=30,
            message="the newly included tree in the mirror",
        )
        wait_for(
            lambda: not (mirror_of(datadir, first) / "private").exists(),
            timeout=30,
            message="the newly excluded sub-tree gone from the mirror",
        )
        wait_converged(second, datadir)
        assert "SIGHUP: identities re-read" in w.proc.output()
        assert w.proc.popen.poll() is None and client.popen.poll() is None
    finally:
        assert client.stop() == 0
        assert w.stop() == 0


def test_sighup_applies_live_keys_names_restart_keys_and_keeps_a_bad_file(
    tmp_path: Path,
) -> None:
    """mirrord re-reads its configuration file: a raised max-clients admits the client it
    refused, a changed cache.size is named as waiting for a restart, and a file that no
    longer loads is logged as an error while the running configuration stays."""
    (tmp_path / "tree").mkdir()
    conf = tmp_path / "mirrord.conf"
    conf.write_text("max-clients = 1\n")
    w = Worker(tmp_path / "data", [tmp_path / "tree"], options=["-c", str(conf)])
    proc = w.start()
    clients = []
    try:
        clients.append(w.client())
        clients[0].send(b"START")
        assert clients[0].recv_line() == b"OK"
        clients.append(w.client())
        assert clients[1].recv_line() == b"BUSY"

        conf.write_text("max-clients = 2\ncache.size = 16\n")
        proc.signal(signal.SIGHUP)
        proc.wait_line("SIGHUP: configuration re-read", 30)
        assert "cache.size changed in the configuration" in proc.output()
        assert "takes effect at the next restart" in proc.output()
        assert "max-clients = 2" in proc.output()
        clients.append(w.client())
        clients[2].send(b"START")
        assert clients[2].recv_line() == b"OK"  # admitted now

        conf.write_text("max-clients = many\n")
        proc.signal(signal.SIGHUP)
        proc.wait_line("running on with the configuration as it was", 30)
        said = [line for line in proc.lines if "configuration as it was" in line]
        assert "error: SIGHUP: " in said[0] and "'max-clients'" in said[0]  # names the key
        proc.wait_line("SIGHUP: identities re-read", 30, count=2)  # identities still re-read
        assert proc.popen.poll() is None
        clients.append(w.client())
        assert clients[3].recv_line() == b"BUSY"  # still 2, not lost to the bad file
    finally:
        for c in clients:
            c.close()
        assert w.stop() == 0


def test_sighup_makes_fs_mirror_reopen_its_log_file(tmp_path: Path) -> None:
    """With log.file, fs_mirror logs there; after the file is rotated away, SIGHUP makes it
    write to a new file at the same path, and it runs on."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"1")
    w = Worker(tmp_path / "data", [tree])
    w.start()
    log_file = tmp_path / "fs_mirror.log"
    client = start_fs_mirror(w, tmp_path / "mirror", "-o", f"log.file={log_file}")
    try:
        wait_for(
            lambda: log_file.exists() and "init finished" in log_file.read_text(),
            timeout=30,
            message="init finished in the log file",
        )
        assert "init finished" not in client.output()  # not on stderr
        log_file.rename(tmp_path / "fs_mirror.log.1")
        client.signal(signal.SIGHUP)
        wait_for(
            lambda: log_file.exists() and "SIGHUP: log file reopened" in log_file.read_text(),
            timeout=30,
            message="the reopened log file",
        )
        assert "SIGHUP" not in (tmp_path / "fs_mirror.log.1").read_text()
        (tree / "g").write_bytes(b"2")
        wait_converged(tree, tmp_path / "mirror")
        assert client.popen.poll() is None
    finally:
        assert client.stop() == 0
        assert w.stop() == 0
