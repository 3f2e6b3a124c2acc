"""fs_mirror.rotate: dated hard-link backups of the mirror, on real directories."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
import sys

import pytest
from twisted.internet.defer import succeed

from fs_mirror.apply import Applier
from fs_mirror.rotate import RotateError, rotate
from fs_sync.interface import Outcome
from protocol.records import Action, Record

DAY = datetime.date(2026, 11, 22)


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "data"
    (root / "var/www").mkdir(parents=True)
    (root / "var/www/index.php").write_text("<?php")
    (root / "var/www").chmod(0o750)
    (root / "var/www/link").symlink_to("index.php")
    (root / "sn").write_text("abc,5\n")
    (root / ".fs_mirror.lock").write_text("1\n")
    (root / ".fs_mirror.d").mkdir()
    return root


def test_rotate_makes_dated_hard_link_tree(mirror, tmp_path):
    """The dated dir holds hard links to files, copied symlinks, dirs with modes, no state."""
    made = rotate(str(mirror), str(tmp_path / "back"), "roc", DAY)
    day = tmp_path / "back/roc/2026-11-22"
    assert made == os.fsencode(day)
    assert os.path.samefile(day / "var/www/index.php", mirror / "var/www/index.php")
    assert os.readlink(day / "var/www/link") == "index.php"
    assert stat.S_IMODE(os.lstat(day / "var/www").st_mode) == 0o750
    assert sorted(os.listdir(day)) == ["var"]
    assert os.listdir(tmp_path / "back/roc") == ["2026-11-22"]


def test_old_dated_dirs_removed(mirror, tmp_path):
    """Dated directories keep days old or more are removed, newer ones and others stay."""
    host = tmp_path / "back/roc"
    for name in ("2026-11-08", "2026-11-09", "2026-11-21", "notes"):
        (host / name).mkdir(parents=True)
    rotate(str(mirror), str(tmp_path / "back"), "roc", DAY, keep=14)
    assert sorted(os.listdir(host)) == ["2026-11-09", "2026-11-21", "2026-11-22", "notes"]


def test_rotating_twice_a_day_replaces(mirror, tmp_path):
    """A second rotation on the same day replaces that day's tree and leaves no temp dir."""
    rotate(str(mirror), str(tmp_path / "back"), "roc", DAY)
    (mirror / "var/www/new").write_text("n")
    rotate(str(mirror), str(tmp_path / "back"), "roc", DAY)
    assert (tmp_path / "back/roc/2026-11-22/var/www/new").read_text() == "n"
    assert os.listdir(tmp_path / "back/roc") == ["2026-11-22"]


class OneFileFetcher:
    """Writes fixed content for every item by temp file and rename (a real backend's way)."""

    def fetch(self, items):
        for item in items:
            tmp = item.local + b".tmp"
            with open(tmp, "wb") as f:
                f.write(b"new content")
            os.rename(tmp, item.local)
        return succeed([(i, Outcome.DONE, "") for i in items])

    def close(self):
        return succeed(None)


def test_fwrite_after_rotation_keeps_backup(mirror, tmp_path):
    """An FWRITE applied after rotation leaves the rotated copy's content unchanged."""
    rotate(str(mirror), str(tmp_path / "back"), "roc", DAY)
    applier = Applier(os.fsencode(mirror), OneFileFetcher(), as_root=False)
    done: list = []
    applier.apply_batch([Record(Action.FWRITE, b"/var/www/index.php")]).addBoth(done.append)
    assert (mirror / "var/www/index.php").read_text() == "new content"
    assert (tmp_path / "back/roc/2026-11-22/var/www/index.php").read_text() == "<?php"


def test_bad_host_name_refused(mirror, tmp_path):
    """A rotate.host that is not a plain name is refused."""
    with pytest.raises(RotateError):
        rotate(str(mirror), str(tmp_path / "back"), "../x", DAY)


def test_command_line(mirror, tmp_path):
    """python -m fs_mirror.rotate makes today's backup and says where."""
    proc = subprocess.run(
        [sys.executable, "-m", "fs_mirror.rotate", str(mirror), str(tmp_path / "b"), "h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    today = datetime.date.today().isoformat()
    assert proc.returncode == 0, proc.stderr
    assert f"rotated into {tmp_path}/b/h/{today}" in proc.stdout
    assert (tmp_path / "b/h" / today / "var/www/index.php").read_text() == "<?php"


def test_backdir_inside_mirror_refused(mirror):
    """A backdir inside the mirror is refused: INIT would sweep it, rotation would copy it."""
    with pytest.raises(RotateError, match="inside the mirror"):
        rotate(str(mirror), str(mirror / "backups"), "roc", DAY)
    assert not (mirror / "backups").exists()
