"""fs_mirror.apply against real directories, with a tiny real fetcher.

The fetcher copies from a "worker" directory on this host into the mirror by
temp file and rename: the same contract every fs_sync backend keeps.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

import pytest
from hypothesis import given, settings, strategies
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel, globalLogPublisher

from fs_mirror.apply import Applier, HostilePath, ReservedPath
from fs_sync.interface import FetchItem, Outcome
from protocol.records import Action, Meta, Record


class CopyFetcher:
    """Copies WORKER + remote to local via a sibling temp file and rename."""

    def __init__(self, worker: bytes, fail: set[bytes] | None = None) -> None:
        self.worker = worker
        self.calls: list[list[bytes]] = []
        self.fail = fail or set()

    def fetch(self, items: Sequence[FetchItem]) -> Deferred:
        self.calls.append([i.remote for i in items])
        out = []
        for item in items:
            src = self.worker + item.remote
            if item.remote in self.fail:
                out.append((item, Outcome.FAILED, "link down"))
            elif not os.path.lexists(src):
                out.append((item, Outcome.VANISHED, "gone"))
            elif not stat.S_ISREG(os.lstat(src).st_mode):
                out.append((item, Outcome.NOT_A_FILE, "not a file"))
            else:
                tmp = item.local + b".tmp-fetch"
                with open(src, "rb") as f, open(tmp, "wb") as g:
                    g.write(f.read())
                os.rename(tmp, item.local)
                out.append((item, Outcome.DONE, ""))
        return succeed(out)

    def close(self) -> Deferred:
        return succeed(None)


@pytest.fixture
def dirs(tmp_path):
    worker = os.fsencode(tmp_path / "worker")
    mirror = os.fsencode(tmp_path / "mirror")
    os.mkdir(worker)
    os.mkdir(mirror)
    return worker, mirror


def put(root: bytes, path: bytes, content: bytes = b"x") -> None:
    full = root + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(content)


def read(root: bytes, path: bytes) -> bytes:
    with open(root + path, "rb") as f:
        return f.read()


def run(applier: Applier, records: list[Record]):
    """Apply a batch and return its result (the fetcher answers synchronously)."""
    results: list = []
    applier.apply_batch(records).addBoth(results.append)
    assert results, "batch did not finish"
    if isinstance(results[0], BaseException) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def R(action: Action, path: bytes, target: bytes | None = None, **meta) -> Record:
    return Record(action, path, target, Meta(**meta))


def make(dirs, **kw) -> tuple[Applier, CopyFetcher]:
    worker, mirror = dirs
    fetcher = CopyFetcher(worker, kw.pop("fail", None))
    return Applier(mirror, fetcher, as_root=os.geteuid() == 0, **kw), fetcher


def test_create_makes_parents_and_mode(dirs):
    """CREATE makes the directory with missing parents and sets its mode and mtime."""
    a, _ = make(dirs)
    run(a, [R(Action.CREATE, b"/var/www/html", mode=0o750, mtime_ns=1_500_000_000_000_000_000)])
    st = os.lstat(dirs[1] + b"/var/www/html")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_mtime_ns == 1_500_000_000_000_000_000


def test_fwrite_fetches_at_end_with_meta(dirs):
    """FWRITE is fetched once at the end of the batch and gets the last metadata sent."""
    worker, mirror = dirs
    put(worker, b"/d/f", b"hello")
    a, fetcher = make(dirs)
    stats = run(
        a,
        [
            R(Action.CREATE, b"/d"),
            R(Action.FWRITE, b"/d/f", mode=0o600),
            R(Action.ATTRIB, b"/d/f", mode=0o640, mtime_ns=10**18),
        ],
    )
    assert fetcher.calls == [[b"/d/f"]]
    assert read(mirror, b"/d/f") == b"hello"
    st = os.lstat(mirror + b"/d/f")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 10**18
    assert (stats.files, stats.bytes) == (1, 5)


def test_delete_file_tree_and_absent(dirs):
    """DELETE removes a file, a whole tree and a symlink (not its target); absent is fine."""
    worker, mirror = dirs
    put(mirror, b"/t/a/b/c")
    put(mirror, b"/f")
    put(dirs[0], b"/outside")
    os.symlink(dirs[0] + b"/outside", mirror + b"/link")
    a, _ = make(dirs)
    run(a, [R(Action.DELETE, p) for p in (b"/t", b"/f", b"/link", b"/never")])
    assert os.listdir(mirror) == []
    assert read(dirs[0], b"/outside") == b"x"


def test_move_renames_locally_without_fetch(dirs):
    """MOVE renames in the mirror and fetches nothing."""
    worker, mirror = dirs
    put(mirror, b"/a/f", b"old")
    a, fetcher = make(dirs)
    run(a, [R(Action.MOVE, b"/a", b"/b/c")])
    assert read(mirror, b"/b/c/f") == b"old" and not os.path.exists(mirror + b"/a")
    assert fetcher.calls == []


def test_move_replaces_nonempty_directory(dirs):
    """MOVE over a non-empty directory in the way replaces it."""
    worker, mirror = dirs
    put(mirror, b"/src", b"new")
    put(mirror, b"/dst/inner/x")
    a, _ = make(dirs)
    run(a, [R(Action.MOVE, b"/src", b"/dst")])
    assert read(mirror, b"/dst") == b"new"


def test_move_missing_source_becomes_fetch(dirs):
    """MOVE of a source the mirror lacks fetches the destination."""
    worker, mirror = dirs
    put(worker, b"/new", b"content")
    a, fetcher = make(dirs)
    run(a, [R(Action.MOVE, b"/old", b"/new")])
    assert fetcher.calls == [[b"/new"]]
    assert read(mirror, b"/new") == b"content"


def test_pending_fetch_follows_move(dirs):
    """FWRITE a, MOVE a b, FWRITE a: both a and b are fetched."""
    worker, mirror = dirs
    put(worker, b"/a", b"A2")
    put(worker, b"/b", b"A1")
    a, fetcher = make(dirs)
    run(a, [R(Action.FWRITE, b"/a"), R(Action.MOVE, b"/a", b"/b"), R(Action.FWRITE, b"/a")])
    assert sorted(fetcher.calls[0]) == [b"/a", b"/b"]
    assert (read(mirror, b"/a"), read(mirror, b"/b")) == (b"A2", b"A1")


def test_pending_fetch_dropped_by_delete_of_parent(dirs):
    """A DELETE of a pending path's parent drops the pending fetch."""
    worker, mirror = dirs
    put(worker, b"/d/f")
    a, fetcher = make(dirs)
    run(a, [R(Action.CREATE, b"/d"), R(Action.FWRITE, b"/d/f"), R(Action.DELETE, b"/d")])
    assert fetcher.calls == [] and os.listdir(mirror) == []


def test_symlink_created_and_replaced_never_followed(dirs):
    """SYMLINK makes or replaces a link (even a directory in the way) without following it."""
    worker, mirror = dirs
    put(mirror, b"/dir/x")
    a, _ = make(dirs)
    run(a, [R(Action.SYMLINK, b"/l", b"/etc/passwd"), R(Action.SYMLINK, b"/dir", b"../l")])
    assert os.readlink(mirror + b"/l") == b"/etc/passwd"
    assert os.readlink(mirror + b"/dir") == b"../l"
    run(a, [R(Action.SYMLINK, b"/l", b"other")])
    assert os.readlink(mirror + b"/l") == b"other"
    assert sorted(os.listdir(mirror)) == [b".fs_mirror.d", b"dir", b"l"]
    assert os.listdir(mirror + b"/.fs_mirror.d/tmp") == []  # temporary links are gone


def test_attrib_sets_mode_and_mtime(dirs):
    """ATTRIB applies mode and mtime to an existing file."""
    worker, mirror = dirs
    put(mirror, b"/f")
    a, _ = make(dirs)
    run(a, [R(Action.ATTRIB, b"/f", mode=0o604, mtime_ns=123 * 10**9)])
    st = os.lstat(mirror + b"/f")
    assert stat.S_IMODE(st.st_mode) == 0o604 and st.st_mtime_ns == 123 * 10**9


@pytest.mark.skipif(os.geteuid() != 0, reason="owners are set only as root")
def test_owner_set_as_root(dirs):
    """Running as root, CREATE and ATTRIB set the owner."""
    worker, mirror = dirs
    put(mirror, b"/f")
    a, _ = make(dirs)
    run(a, [R(Action.CREATE, b"/d", uid=1234, gid=2345), R(Action.ATTRIB, b"/f", uid=7, gid=8)])
    assert (os.lstat(mirror + b"/d").st_uid, os.lstat(mirror + b"/d").st_gid) == (1234, 2345)
    assert (os.lstat(mirror + b"/f").st_uid, os.lstat(mirror + b"/f").st_gid) == (7, 8)


def test_attrib_does_not_change_hard_linked_copy(dirs, tmp_path):
    """ATTRIB on a file hard-linked by a backup changes the mirror copy only."""
    worker, mirror = dirs
    put(mirror, b"/f", b"data")
    os.chmod(mirror + b"/f", 0o644)
    backup = os.fsencode(tmp_path / "backup")
    os.link(mirror + b"/f", backup)
    a, _ = make(dirs)
    run(a, [R(Action.ATTRIB, b"/f", mode=0o600)])
    assert stat.S_IMODE(os.lstat(mirror + b"/f").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(backup).st_mode) == 0o644
    assert read(mirror, b"/f") == b"data"


def test_fwrite_keeps_hard_link_to_old_content(dirs, tmp_path):
    """A hard link to the old file keeps the old content after an FWRITE."""
    worker, mirror = dirs
    put(mirror, b"/f", b"old")
    backup = os.fsencode(tmp_path / "backup")
    os.link(mirror + b"/f", backup)
    put(worker, b"/f", b"new")
    a, _ = make(dirs)
    run(a, [R(Action.FWRITE, b"/f")])
    assert read(mirror, b"/f") == b"new"
    with open(backup, "rb") as f:
        assert f.read() == b"old"


def test_fwrite_over_local_directory(dirs):
    """FWRITE of a path that is locally a directory replaces the directory."""
    worker, mirror = dirs
    put(mirror, b"/p/child")
    put(worker, b"/p", b"file now")
    a, _ = make(dirs)
    run(a, [R(Action.FWRITE, b"/p")])
    assert read(mirror, b"/p") == b"file now"


def test_create_over_local_file(dirs):
    """CREATE where the mirror has a file (or a file as a parent) makes directories."""
    worker, mirror = dirs
    put(mirror, b"/p")
    put(mirror, b"/q")
    a, _ = make(dirs)
    run(a, [R(Action.CREATE, b"/p"), R(Action.CREATE, b"/q/sub")])
    assert os.path.isdir(mirror + b"/p") and os.path.isdir(mirror + b"/q/sub")


def test_vanished_is_skipped_and_batch_continues(dirs):
    """A file gone on the worker is skipped; the other files of the batch arrive."""
    worker, mirror = dirs
    put(worker, b"/there", b"1")
    os.mkdir(worker + b"/adir")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        a, _ = make(dirs, log=Logger(namespace="test"))
        stats = run(
            a, [R(Action.FWRITE, b"/gone"), R(Action.FWRITE, b"/adir"), R(Action.FWRITE, b"/there")]
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert read(mirror, b"/there") == b"1" and stats.skipped == 0
    assert any("vanished on worker before its fetch" in e.get("log_format", "") for e in events)
    assert set(a.owed) == {b"/gone", b"/adir"}  # owed until a later record settles them


def test_failed_fetch_is_skipped_counted_and_owed(dirs):
    """A file the backend could not get is skipped and counted; the rest of the batch lands."""
    worker, mirror = dirs
    put(worker, b"/f")
    put(worker, b"/g", b"good")
    a, _ = make(dirs, fail={b"/f"})
    stats = run(a, [R(Action.FWRITE, b"/f"), R(Action.FWRITE, b"/g")])
    assert stats.skipped == 1 and read(mirror, b"/g") == b"good"
    assert not os.path.lexists(mirror + b"/f") and b"/f" in a.owed


@pytest.mark.parametrize(
    "path",
    [b"/../escape", b"/a/../../escape", b"relative", b"", b"/a//b", b"/./a", b"/a/\0b", b"/"],
)
def test_confine_refuses_hostile_paths(dirs, path):
    """confine refuses .., relative, empty, NUL, doubled slashes and the root itself."""
    a, _ = make(dirs)
    with pytest.raises(HostilePath):
        a.confine(path)


@pytest.mark.parametrize("path", [b"/sn", b"/.fs_mirror.lock", b"/.fs_mirror.d/sn.tmp"])
def test_own_state_files_skipped_batch_goes_on(dirs, path):
    """Worker paths colliding with our state files are skipped; the batch goes on."""
    worker, mirror = dirs
    put(worker, b"/ok", b"fine")
    a, _ = make(dirs)
    with pytest.raises(ReservedPath):
        a.confine(path)
    stats = run(a, [R(Action.CREATE, path), R(Action.DELETE, path), R(Action.FWRITE, b"/ok")])
    assert read(mirror, b"/ok") == b"fine" and stats.refused == 2
    assert os.listdir(mirror) == [b"ok"]


HOSTILE = [
    R(Action.FWRITE, b"/link/victim"),
    R(Action.CREATE, b"/link/newdir"),
    R(Action.DELETE, b"/link/victim"),
    R(Action.MOVE, b"/link/victim", b"/stolen"),
    R(Action.SYMLINK, b"/link/s", b"/x"),
    R(Action.ATTRIB, b"/link/victim", mode=0o777),
    R(Action.MOVE, b"/x", b"/link/y"),
    R(Action.CREATE, b"/../escape"),
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda r: r.encode().decode())
def test_hostile_record_is_skipped_and_writes_nothing_outside(dirs, tmp_path, hostile):
    """A record through a symlink in the mirror (or with ..) is refused; the rest applies."""
    worker, mirror = dirs
    outside = os.fsencode(tmp_path / "outside")
    os.mkdir(outside)
    put(outside, b"/victim", b"keep")
    put(mirror, b"/x", b"mirror file")
    put(worker, b"/link/victim", b"evil")
    put(worker, b"/after", b"after")
    a, fetcher = make(dirs)
    run(a, [R(Action.SYMLINK, b"/link", outside)])
    stats = run(a, [R(Action.FWRITE, b"/x"), hostile, R(Action.FWRITE, b"/after")])
    assert stats.refused == 1
    assert os.listdir(outside) == [b"victim"] and read(outside, b"/victim") == b"keep"
    assert stat.S_IMODE(os.lstat(outside + b"/victim").st_mode) != 0o777
    assert read(mirror, b"/after") == b"after"  # one bad record never blocks the rest
    assert not os.path.exists(os.path.dirname(mirror) + b"/escape")


def test_pending_fetch_rechecked_after_symlink_swap(dirs, tmp_path):
    """A pending FWRITE whose parent became a symlink later in the batch is not fetched."""
    worker, mirror = dirs
    outside = os.fsencode(tmp_path / "outside")
    os.mkdir(outside)
    put(worker, b"/d/f", b"evil")
    a, fetcher = make(dirs)
    run(a, [R(Action.CREATE, b"/d"), R(Action.FWRITE, b"/d/f"), R(Action.SYMLINK, b"/d", outside)])
    assert os.listdir(outside) == [] and fetcher.calls == []
    assert os.readlink(mirror + b"/d") == outside


def test_verbose_lines(dirs):
    """-v prints one line per applied record in the fixed form with the PREFIX."""
    worker, mirror = dirs
    put(worker, b"/d/f")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        a, _ = make(dirs, verbose=True, log=Logger(namespace="test"))
        run(
            a,
            [
                R(Action.CREATE, b"/d"),
                R(Action.FWRITE, b"/d/f"),
                R(Action.SYMLINK, b"/d/l", b"t"),
                R(Action.MOVE, b"/d/l", b"/d/m"),
                R(Action.ATTRIB, b"/d/f", mode=0o644),
                R(Action.DELETE, b"/d/m"),
                R(Action.DELETE, b"/d"),
            ],
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e["line"] for e in events if "line" in e and e["log_level"] == LogLevel.info]
    prefix = f", PREFIX '{os.fsdecode(mirror)}'"
    assert lines == [
        "CREATE DIR '/d'" + prefix,
        "SYMLINK '/d/l' -> 't'" + prefix,
        "MOVE '/d/l' -> '/d/m'" + prefix,
        "DELETE FILE '/d/m'" + prefix,
        "DELETE DIR '/d'" + prefix,
    ]


def test_verbose_write_and_attrib_lines(dirs):
    """-v prints WRITE FILE after a fetch and ATTRIB for metadata, non-UTF-8 escaped."""
    worker, mirror = dirs
    put(worker, b"/caf\xe9")
    put(mirror, b"/g")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        a, _ = make(dirs, verbose=True, log=Logger(namespace="test"))
        run(a, [R(Action.FWRITE, b"/caf\xe9"), R(Action.ATTRIB, b"/g", mode=0o600)])
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e["line"] for e in events if "line" in e]
    prefix = f", PREFIX '{os.fsdecode(mirror)}'"
    assert lines == ["ATTRIB '/g'" + prefix, "WRITE FILE '/caf\\xe9'" + prefix]


def test_pending_children_follow_directory_move(dirs):
    """FWRITE d/f, then MOVE d e: the pending fetch follows to e/f; d/f is not fetched."""
    worker, mirror = dirs
    put(mirror, b"/d/old", b"o")
    put(worker, b"/e/f", b"moved content")
    put(worker, b"/e/old", b"o")
    a, fetcher = make(dirs)
    run(a, [R(Action.FWRITE, b"/d/f"), R(Action.FWRITE, b"/x"), R(Action.MOVE, b"/d", b"/e")])
    assert sorted(fetcher.calls[0]) == [b"/e/f", b"/x"]
    assert read(mirror, b"/e/f") == b"moved content" and read(mirror, b"/e/old") == b"o"
    assert not os.path.exists(mirror + b"/d")


def test_fwrite_replacing_directory_drops_its_pending_children(dirs):
    """FWRITE d/f then FWRITE d (now a file on the worker): only d is fetched."""
    worker, mirror = dirs
    put(mirror, b"/d/keep", b"k")
    put(worker, b"/d", b"now a file")
    a, fetcher = make(dirs)
    run(a, [R(Action.FWRITE, b"/d/f"), R(Action.FWRITE, b"/d")])
    assert fetcher.calls == [[b"/d"]] and read(mirror, b"/d") == b"now a file"


def test_replay_is_idempotent(dirs):
    """Applying the same batch twice (a retry after reconnect) ends with the same tree."""
    worker, mirror = dirs
    put(worker, b"/b/f", b"v")
    batch = [
        R(Action.CREATE, b"/a"),
        R(Action.FWRITE, b"/a/f"),
        R(Action.MOVE, b"/a", b"/b"),
        R(Action.SYMLINK, b"/l", b"b/f"),
        R(Action.DELETE, b"/gone"),
    ]
    a, _ = make(dirs)
    run(a, batch)
    first = sorted(os.listdir(mirror)), read(mirror, b"/b/f")
    run(a, batch)
    assert (sorted(os.listdir(mirror)), read(mirror, b"/b/f")) == first
    assert first == ([b".fs_mirror.d", b"b", b"l"], b"v")


_parts = strategies.sampled_from([b"a", b"..", b".", b"", b"b\xff", b"sn", b"%2e", b"c d", b"\0"])


@settings(max_examples=300, deadline=None)
@given(parts=strategies.lists(_parts, min_size=0, max_size=6), absolute=strategies.booleans())
def test_confine_never_leaves_the_mirror(tmp_path_factory, parts, absolute):
    """Whatever path comes in, confine refuses it or returns a path inside the datadir."""
    mirror = os.fsencode(tmp_path_factory.getbasetemp() / "prop-mirror")
    os.makedirs(mirror, exist_ok=True)
    a = Applier(mirror, CopyFetcher(mirror), as_root=False)
    path = (b"/" if absolute else b"") + b"/".join(parts)
    try:
        local = a.confine(path)
    except (HostilePath, ReservedPath):
        return
    assert local == mirror + path
    assert os.path.normpath(local).startswith(mirror + b"/")
    assert b"/../" not in local + b"/" and b"\0" not in local
