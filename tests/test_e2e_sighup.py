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
