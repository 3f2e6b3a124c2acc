"""One record the mirror cannot apply is logged once, counted and skipped (contract 5).

Every later change still arrives: a user who can write in an included tree
must not be able to blind the backup (and the tripwire) with one odd name.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.daemons import Worker, mirror_of, start_fs_mirror
from tests.helpers import wait_for

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def _deep_dir(top: Path, total: int) -> Path:
    """Directories below ``top`` until the path is ``total`` bytes long (each name 200 bytes)."""
    path = top
    while len(os.fsencode(path)) + 201 < total:
        path = path / ("d" * 200)
    rest = total - len(os.fsencode(path)) - 1
    path = path / ("e" * rest)
    path.mkdir(parents=True)
    return path


def test_a_tree_too_deep_for_the_mirror_is_skipped_and_later_changes_arrive(tmp_path: Path):
    """A worker path that fits PATH_MAX but not under the datadir: skipped once, the rest flows."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "before").write_bytes(b"before")
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    backup = tmp_path / "backup-with-a-long-enough-name"
    client = start_fs_mirror(w, backup, verbose=True)
    try:
        client.wait_line("init finished", 30)
        deep = _deep_dir(src, PATH_MAX - 40)  # fits the worker, not the mirror's longer prefix
        (deep / "f").write_bytes(b"x")
        (src / "after").write_bytes(b"after")
        mirror = mirror_of(backup, src)
        wait_for(lambda: (mirror / "after").exists(), 30, message="a later change in the mirror")
        assert (mirror / "after").read_bytes() == b"after"
        (src / "after2").write_bytes(b"later batch")
        wait_for(lambda: (mirror / "after2").exists(), 30, message="a later batch in the mirror")
        out = client.output()
        assert "File name too long" in out and "Traceback" not in out
        assert out.count("reconnecting") == 0, out  # never a retry loop of that batch
        assert client.popen.poll() is None
    finally:
        assert client.stop() == 0
        w.stop()
