"""Files fetched too late under their old name are fetched under the new one.

The worker renames faster than the mirror fetches: a directory filled and
renamed at once, an editor's atomic save, a tree renamed while its new
contents were in flight.  Each test replays the records mirrord sends for
such a case, in the batches a slow mirror sees them, against a real worker
directory and a real mirror directory.
"""

from __future__ import annotations

import os
import stat

import pytest

from fs_mirror.owed import Owed
from protocol.records import Action, Meta
from tests.test_apply import R, make, put, read, run


@pytest.fixture
def dirs(tmp_path):
    worker, mirror = os.fsencode(tmp_path / "worker"), os.fsencode(tmp_path / "mirror")
    os.mkdir(worker)
    os.mkdir(mirror)
    return worker, mirror


def mode_of(root: bytes, path: bytes) -> int:
    return stat.S_IMODE(os.lstat(root + path).st_mode)


def test_directory_filled_then_renamed_arrives_with_its_files(dirs):
    """mkdir X.tmp; write X.tmp/app.txt; mv X.tmp X: the file is fetched under X."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(worker, b"/X/app.txt", b"v")  # the worker's state by the time the mirror fetches
    run(applier, [R(Action.CREATE, b"/X.tmp"), R(Action.FWRITE, b"/X.tmp/app.txt")])
    run(applier, [R(Action.MOVE, b"/X.tmp", b"/X")])
    assert read(mirror, b"/X/app.txt") == b"v"
    assert not os.path.lexists(mirror + b"/X.tmp") and len(applier.owed) == 0


def test_renamed_directory_does_not_keep_old_content(dirs):
    """A rewrite fetched too late because its directory was renamed lands under the new name."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(worker, b"/d/f", b"old content, longer than the new one")
    run(applier, [R(Action.CREATE, b"/d"), R(Action.FWRITE, b"/d/f")])
    os.rename(worker + b"/d", worker + b"/e")
    put(worker, b"/e/f", b"new")
    run(applier, [R(Action.FWRITE, b"/d/f")])  # too late: /d is /e by now
    run(applier, [R(Action.MOVE, b"/d", b"/e")])
    assert read(mirror, b"/e/f") == b"new"


def test_what_is_owed_survives_a_restart(dirs):
    """The owed set is saved with the batch, so a new fs_mirror still fetches after the MOVE."""
    worker, mirror = dirs
    saved = mirror + b".owed"
    applier, _ = make(dirs, owed=Owed(saved))
    put(worker, b"/X/a", b"a")
    run(applier, [R(Action.CREATE, b"/X.tmp"), R(Action.FWRITE, b"/X.tmp/a", mode=0o640)])
    applier.checkpoint()
    restarted, _ = make(dirs, owed=Owed(saved))  # a kill -9, then a new process
    run(restarted, [R(Action.MOVE, b"/X.tmp", b"/X")])
    assert read(mirror, b"/X/a") == b"a" and mode_of(mirror, b"/X/a") == 0o640


def test_move_after_vanished_fetch_keeps_mode_and_mtime(dirs):
    """FWRITE vanished in one batch, MOVE (no fields) in the next: the fetch gets mode, mtime."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    os.makedirs(worker + b"/srv")
    mtime = 1_600_000_000_500_000_000
    run(applier, [R(Action.FWRITE, b"/srv/a", mode=0o640, mtime_ns=mtime)])  # a is gone
    put(worker, b"/srv/b", b"moved")
    run(applier, [R(Action.MOVE, b"/srv/a", b"/srv/b")])
    assert read(mirror, b"/srv/b") == b"moved"
    assert mode_of(mirror, b"/srv/b") == 0o640
    assert os.lstat(mirror + b"/srv/b").st_mtime_ns == mtime


def test_attrib_of_a_vanished_file_updates_what_a_move_gets(dirs):
    """An ATTRIB between the vanished FWRITE and the MOVE changes the mode the MOVE applies."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    run(applier, [R(Action.FWRITE, b"/a", mode=0o644)])
    run(applier, [R(Action.ATTRIB, b"/a", mode=0o600)])
    put(worker, b"/b", b"x")
    run(applier, [R(Action.MOVE, b"/a", b"/b")])
    assert mode_of(mirror, b"/b") == 0o600


def test_a_later_record_for_the_path_settles_what_is_owed(dirs):
    """A DELETE of an owed path (or of its directory) settles it: nothing stale later."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    run(applier, [R(Action.FWRITE, b"/a", mode=0o604), R(Action.FWRITE, b"/d/x")])
    assert set(applier.owed) == {b"/a", b"/d/x"}
    run(applier, [R(Action.DELETE, b"/a"), R(Action.DELETE, b"/d")])
    assert len(applier.owed) == 0
    put(worker, b"/b", b"x")
    run(applier, [R(Action.MOVE, b"/a", b"/b")])
    assert mode_of(mirror, b"/b") != 0o604  # the fetcher's own default, not the stale mode


def test_replayed_directory_move_keeps_the_moved_tree(dirs):
    """A batch replayed after a crash repeats a MOVE already made: the tree stays."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(worker, b"/new/f", b"f")
    batch = [
        R(Action.CREATE, b"/old"),
        R(Action.FWRITE, b"/old/f"),
        R(Action.MOVE, b"/old", b"/new"),
    ]
    run(applier, batch)
    assert read(mirror, b"/new/f") == b"f"
    run(applier, [R(Action.MOVE, b"/old", b"/new")])  # the replay, source already gone
    assert read(mirror, b"/new/f") == b"f"


def test_move_of_a_directory_the_mirror_lacks_asks_for_a_resync(dirs):
    """A directory moved in from nowhere the mirror knows cannot be fetched file by file."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(worker, b"/there/f", b"f")
    run(applier, [R(Action.MOVE, b"/never-seen", b"/there")])
    assert applier.owed.resync


def test_owed_set_is_bounded_and_then_asks_for_a_resync(dirs):
    """Past its limit the set stops growing and asks for a full resync instead."""
    applier, _ = make(dirs, owed=Owed(limit=10))
    run(applier, [R(Action.FWRITE, b"/v%d" % i, mode=0o600) for i in range(15)])
    assert len(applier.owed) == 10 and applier.owed.resync


def test_a_later_file_fetched_under_the_name_is_not_carried_by_a_move(dirs):
    """FWRITE a (X); MOVE a b; FWRITE a (Y), fetched after all three happened on the worker.

    The first fetch of ``a`` gets Y, not the X the record describes (its size
    says so): the MOVE must then fetch ``b`` anew instead of renaming Y there.
    """
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(worker, b"/b", b"X, the first content")
    put(worker, b"/a", b"Y")
    run(applier, [R(Action.FWRITE, b"/a", size=len(b"X, the first content"))])
    assert read(mirror, b"/a") == b"Y" and b"/a" in applier.owed
    run(applier, [R(Action.MOVE, b"/a", b"/b")])
    run(applier, [R(Action.FWRITE, b"/a", size=1)])
    assert read(mirror, b"/b") == b"X, the first content" and read(mirror, b"/a") == b"Y"
    assert len(applier.owed) == 0


def test_a_guessed_fetch_that_vanished_is_owed_nothing(dirs):
    """MOVE from a source the mirror lacks, its destination gone too: no debt is kept
    (it might be a directory, and a debt would later fetch over one)."""
    applier, _ = make(dirs)
    run(applier, [R(Action.MOVE, b"/never-seen", b"/gone-too")])
    assert b"/gone-too" not in applier.owed and not applier.owed.resync


def test_a_debt_moved_with_a_directory_never_removes_the_directory(dirs):
    """An owed path that is a directory here, moved: the directory and its files stay."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(mirror, b"/d48/keep", b"kept")
    put(worker, b"/f3222/keep", b"kept")
    applier.owed.add(b"/d48", Meta())
    run(applier, [R(Action.MOVE, b"/d48", b"/f3222")])
    assert read(mirror, b"/f3222/keep") == b"kept"


def test_a_replayed_move_of_an_owed_directory_keeps_it(dirs):
    """The same when the MOVE is a replay (a killed run already made it)."""
    worker, mirror = dirs
    applier, _ = make(dirs)
    put(mirror, b"/f3222/keep", b"kept")
    put(worker, b"/f3222/keep", b"kept")
    applier.owed.add(b"/d48", Meta())
    results: list = []
    applier.apply_batch([R(Action.MOVE, b"/d48", b"/f3222")], replayed=1).addBoth(results.append)
    assert results and not hasattr(results[0], "raiseException")
    assert read(mirror, b"/f3222/keep") == b"kept"
