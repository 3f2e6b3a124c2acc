"""mirrord.scan: the pure diff, and walks of real directories against a real store."""

from __future__ import annotations

import os

import pytest

from fs_info.identity import Identity
from mirrord.diff import changes, diff
from mirrord.reconcile import reconcile
from mirrord.scan import ScanStats, disk_entry, scan_tree
from mirrord.store import DIR, FILE, LINK, Entry, Store
from mirrord.values import Change, DropTree, ListingWalk, MoveTree, Put, TreeWalk
from protocol.records import Action, Meta, Record


def E(kind=FILE, mode=0o644, uid=1, gid=2, size=3, mtime=10, ctime=20, target=b""):
    return Entry(kind, mode, uid, gid, size, mtime, ctime, target)


P = b"/r/x"


# -- diff (pure) ------------------------------------------------------------------
def test_diff_new_dir_file_symlink():
    """New dir -> CREATE with meta, new file -> FWRITE with size, new link -> SYMLINK."""
    assert diff(P, None, E(DIR, size=0)) == [
        Record(Action.CREATE, P, meta=Meta(mode=0o644, uid=1, gid=2, mtime_ns=10))
    ]
    assert diff(P, None, E()) == [
        Record(Action.FWRITE, P, meta=Meta(mode=0o644, uid=1, gid=2, size=3, mtime_ns=10))
    ]
    assert diff(P, None, E(LINK, target=b"t")) == [Record(Action.SYMLINK, P, target=b"t")]


def test_diff_gone_and_kind_change():
    """Gone -> DELETE; a kind change -> DELETE then the new thing."""
    assert diff(P, E(), None) == [Record(Action.DELETE, P)]
    assert diff(P, None, None) == []
    assert [r.action for r in diff(P, E(), E(DIR))] == [Action.DELETE, Action.CREATE]
    assert [r.action for r in diff(P, E(DIR), E(LINK, target=b"x"))] == [
        Action.DELETE,
        Action.SYMLINK,
    ]


def test_diff_file_changes():
    """size or mtime -> FWRITE; only mode/uid/gid (ctime as stored) -> ATTRIB."""
    assert [r.action for r in diff(P, E(), E(size=4))] == [Action.FWRITE]
    assert [r.action for r in diff(P, E(), E(mtime=11))] == [Action.FWRITE]
    assert diff(P, E(), E(mode=0o600, uid=5)) == [
        Record(Action.ATTRIB, P, meta=Meta(mode=0o600, uid=5, gid=2))
    ]


def test_diff_file_whose_ctime_alone_moved():
    """Size and mtime can be put back, ctime cannot: in a walk (nobody saw what
    happened) a moved ctime is an FWRITE, carrying mode and owner when those
    changed too; for a path whose events were read (``seen``) it is nothing, or
    ATTRIB for a new mode or owner, since a write would have come as IN_CLOSE_WRITE."""
    fwrite = [Record(Action.FWRITE, P, meta=Meta(mode=0o644, uid=1, gid=2, size=3, mtime_ns=10))]
    assert diff(P, E(), E(ctime=99)) == fwrite
    assert diff(P, E(), E(ctime=99), seen=True) == []
    assert changes(P, E(), E(ctime=99), seen=True) == [Change(Put(P, E(ctime=99)))]
    assert diff(P, E(), E(mode=0o600, ctime=99)) == [
        Record(Action.FWRITE, P, meta=Meta(mode=0o600, uid=1, gid=2, size=3, mtime_ns=10))
    ]
    assert diff(P, E(), E(mode=0o600, ctime=99), seen=True) == [
        Record(Action.ATTRIB, P, meta=Meta(mode=0o600, uid=1, gid=2))
    ]
    assert diff(P, E(DIR), E(DIR, ctime=99)) == []  # a directory's names are listed instead
    assert diff(P, E(LINK, target=b"t"), E(LINK, target=b"t", ctime=99)) == []


def test_diff_dir_and_link_changes():
    """Dir mtime alone -> nothing (snapshot still updated); dir chmod -> ATTRIB; retarget."""
    assert diff(P, E(DIR), E(DIR, mtime=99)) == []
    assert changes(P, E(DIR), E(DIR, mtime=99)) == [Change(Put(P, E(DIR, mtime=99)))]
    assert [r.action for r in diff(P, E(DIR), E(DIR, gid=7))] == [Action.ATTRIB]
    assert diff(P, E(LINK, target=b"a"), E(LINK, target=b"b")) == [
        Record(Action.SYMLINK, P, target=b"b")
    ]
    assert changes(P, E(), E()) == []


def test_changes_pair_records_with_ops():
    """A kind change deletes the old sub-tree then puts the new entry."""
    assert changes(P, E(DIR), E()) == [
        Change(DropTree(P), Record(Action.DELETE, P)),
        Change(Put(P, E()), diff(P, None, E())[0]),
    ]
    assert changes(P, E(), None) == [Change(DropTree(P), Record(Action.DELETE, P))]


# -- walks of real trees ------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db"))
    yield s
    s.close()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "a" / "deep" / "f").write_bytes(b"deep")
    (root / "a-b").mkdir()
    (root / "a-b" / "g").write_bytes(b"g")
    (root / "skip" / "inner").mkdir(parents=True)
    (root / "skip" / "inner" / "secret").write_bytes(b"s")
    (root / "file").write_bytes(b"hello")
    (root / "gone").write_bytes(b"bye")
    (root / "link").symlink_to("file")
    (root / "replaced").write_bytes(b"was a file")
    os.mkfifo(root / "fifo")
    return os.fsencode(root)


class Watches:
    """Records every watch(dir) call; optionally runs an action on one of them."""

    def __init__(self, action=None):
        self.calls: list[bytes] = []
        self.action = action

    def __call__(self, path: bytes) -> bool:
        self.calls.append(path)
        if self.action is not None:
            self.action(path)
        return True


def run(root, ident, store, watch=None, commit=True, **kw):
    """Drive a scan to the end, committing each chunk like the journal does."""
    out = []
    for chunk in scan_tree(root, ident, store, watch or Watches(), **kw):
        out += chunk
        if commit and chunk:
            store.commit([c.record for c in chunk if c.record], [c.op for c in chunk])
    return out


def records(chs):
    return [(c.record.action, c.record.path) for c in chs if c.record is not None]


def test_first_scan_then_nothing(tree, store):
    """A first walk reports every member, dirs before contents, fifo skipped; a rerun is empty."""
    ident = Identity([tree], [tree + b"/skip"])
    watch = Watches()
    chs = run(tree, ident, store, watch)
    assert records(chs) == [
        (Action.CREATE, tree),
        (Action.CREATE, tree + b"/a"),
        (Action.CREATE, tree + b"/a/deep"),
        (Action.FWRITE, tree + b"/a/deep/f"),
        (Action.CREATE, tree + b"/a-b"),
        (Action.FWRITE, tree + b"/a-b/g"),
        (Action.FWRITE, tree + b"/file"),
        (Action.FWRITE, tree + b"/gone"),
        (Action.SYMLINK, tree + b"/link"),
        (Action.FWRITE, tree + b"/replaced"),
    ]
    assert watch.calls == [tree, tree + b"/a", tree + b"/a/deep", tree + b"/a-b"]
    assert [p for p, _ in store.walk()] == [p for _, p in records(chs)]
    assert run(tree, ident, store) == []


def test_changed_tree(tree, store):
    """Created, deleted, modified, chmod, retargeted and replaced paths give the right records."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.mkdir(tree + b"/new")
    with open(tree + b"/new/n", "wb") as f:
        f.write(b"n")
    os.unlink(tree + b"/gone")
    with open(tree + b"/file", "ab") as f:
        f.write(b" world")
    os.chmod(tree + b"/a-b/g", 0o600)
    os.unlink(tree + b"/link")
    os.symlink(b"a", tree + b"/link")
    os.unlink(tree + b"/replaced")
    os.mkdir(tree + b"/replaced")
    chs = run(tree, ident, store)
    assert records(chs) == [
        (Action.FWRITE, tree + b"/a-b/g"),  # ctime moved, unseen: see diff
        (Action.FWRITE, tree + b"/file"),
        (Action.DELETE, tree + b"/gone"),
        (Action.SYMLINK, tree + b"/link"),
        (Action.CREATE, tree + b"/new"),
        (Action.FWRITE, tree + b"/new/n"),
        (Action.DELETE, tree + b"/replaced"),
        (Action.CREATE, tree + b"/replaced"),
    ]
    chmodded = next(c.record for c in chs if c.record and c.record.path == tree + b"/a-b/g")
    assert chmodded.meta.mode == 0o600
    assert store.get(tree + b"/link").target == b"a"
    assert store.get(tree + b"/replaced").kind == DIR
    assert run(tree, ident, store) == []


def test_excluded_subtree_never_appears(tree, store):
    """Nothing under an excluded directory is walked, stored or reported."""
    ident = Identity([tree], [tree + b"/skip"])
    watch = Watches()
    chs = run(tree, ident, store, watch)
    assert not [p for _, p in records(chs) if b"/skip" in p]
    assert not [p for p, _ in store.walk() if b"/skip" in p]
    assert not [p for p in watch.calls if b"/skip" in p]


def test_newly_excluded_subtree_is_deleted(tree, store):
    """A path stored before it was excluded is reported deleted."""
    run(tree, Identity([tree]), store)
    chs = run(tree, Identity([tree], [tree + b"/a"]), store)
    assert records(chs) == [(Action.DELETE, tree + b"/a")]
    assert store.get(tree + b"/a/deep/f") is None


def test_changed_only_walk_lists_changed_directories(tree, store):
    """full=False lists only directories whose mtime/ctime moved, yet finds file changes."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    with open(tree + b"/a/deep/f", "ab") as f:  # no directory changes for this one
        f.write(b"more")
    os.mkdir(tree + b"/a-b/sub")  # a-b's mtime moves
    stats = ScanStats()
    chs = run(tree, ident, store, full=False, stats=stats)
    assert records(chs) == [
        (Action.FWRITE, tree + b"/a/deep/f"),
        (Action.CREATE, tree + b"/a-b/sub"),
    ]
    assert stats.dirs_listed == 2  # a-b and the new a-b/sub
    full = ScanStats()
    run(tree, ident, store, stats=full)
    assert full.dirs_listed == 5


def test_vanishing_entries_are_gone_without_error(tree, store):
    """Paths deleted while the walk runs are treated as gone, including a listed dir."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.mkdir(tree + b"/a/deep/z")

    def action(path):
        if path == tree + b"/a":  # before /a is listed: remove a later sibling
            os.unlink(tree + b"/file")
        if path == tree + b"/a/deep/z":  # the directory about to be listed goes away
            os.rmdir(path)

    chs = run(tree, ident, store, Watches(action))
    assert records(chs) == [(Action.DELETE, tree + b"/file")]
    assert store.get(tree + b"/a/deep/z") is None


def test_chunk_commits_between_yields_are_not_seen_as_old(tmp_path, store):
    """Committing each chunk mid-walk (3000 names in one dir) never yields a false DELETE."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(3000):
        (root / f"f{i:05d}").write_bytes(b"")
    broot = os.fsencode(root)
    ident = Identity([broot])
    chunks = list(scan_tree(broot, ident, store, Watches()))
    assert len(chunks) > 3
    for i in range(0, 2000, 3):
        os.unlink(root / f"f{i:05d}")
    store.commit([], [c.op for chunk in chunks for c in chunk])
    chs = run(broot, ident, store)
    assert records(chs) == [(Action.DELETE, broot + b"/f%05d" % i) for i in range(0, 2000, 3)]
    assert len(list(store.children(broot))) == 3000 - 667
    for i in range(2000, 3000):
        os.unlink(root / f"f{i:05d}")
    (root / "f00001").write_bytes(b"x")
    chs = run(broot, ident, store)
    assert records(chs) == [(Action.FWRITE, broot + b"/f00001")] + [
        (Action.DELETE, broot + b"/f%05d" % i) for i in range(2000, 3000)
    ]


def test_nested_include_root_scans_alone(tree, store):
    """An include below an excluded tree is walked as its own root."""
    ident = Identity([tree, tree + b"/skip/inner"], [tree + b"/skip"])
    run(tree, ident, store)
    chs = run(tree + b"/skip/inner", ident, store)
    assert records(chs) == [
        (Action.CREATE, tree + b"/skip/inner"),
        (Action.FWRITE, tree + b"/skip/inner/secret"),
    ]
    assert run(tree, ident, store) == []  # the outer walk does not call them gone


# -- reconcile ----------------------------------------------------------------------
def test_reconcile_vanished_and_type_races(tree, store):
    """A deleted path gives DELETE; a file re-created as a dir gives DELETE, CREATE + a walk."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.unlink(tree + b"/gone")
    chs, follow = reconcile(tree + b"/gone", ident, store, Watches())
    assert (records(chs), follow) == ([(Action.DELETE, tree + b"/gone")], None)
    os.unlink(tree + b"/file")
    os.mkdir(tree + b"/file")
    chs, follow = reconcile(tree + b"/file", ident, store, Watches())
    assert records(chs) == [(Action.DELETE, tree + b"/file"), (Action.CREATE, tree + b"/file")]
    assert follow == TreeWalk(tree + b"/file")
    chs, follow = reconcile(tree + b"/never", ident, store, Watches())
    assert (chs, follow) == ([], None)


def test_reconcile_written_file_with_same_stat_still_fwrites(tree, store):
    """A close-after-write whose size and mtime look unchanged (one tick) still gives FWRITE."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    st = os.stat(tree + b"/file")
    with open(tree + b"/file", "wb") as fh:
        fh.write(b"HELLO")  # same size
    os.utime(tree + b"/file", ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    chs, _ = reconcile(tree + b"/file", ident, store, Watches())
    assert records(chs) == []
    chs, _ = reconcile(tree + b"/file", ident, store, Watches(), written=True)
    assert records(chs) == [(Action.FWRITE, tree + b"/file")]


def _rewrite_keeping_size_and_mtime(path: bytes, content: bytes) -> None:
    st = os.stat(path)
    assert len(content) == st.st_size
    with open(path, "wb") as fh:
        fh.write(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("full", [True, False], ids=["boot", "overflow-or-verify"])
def test_walk_sees_a_same_size_rewrite_with_restored_mtime(tree, store, full):
    """A file rewritten unseen with its size and mtime put back (tar, rsync -t,
    cp -p) is an FWRITE for a full walk (boot) and a changed-only one (overflow
    recovery, the verification rescan): only its ctime tells."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    _rewrite_keeping_size_and_mtime(
        tree + b"/a/deep/f", b"F" * os.stat(tree + b"/a/deep/f").st_size
    )
    assert records(run(tree, ident, store, full=full)) == [(Action.FWRITE, tree + b"/a/deep/f")]
    assert run(tree, ident, store, full=full) == []


def test_reconcile_written_and_chmodded_file_fwrites_with_its_new_mode(tree, store):
    """chmod, then a same-size rewrite with the mtime put back, read in one turn
    (IN_ATTRIB and IN_CLOSE_WRITE merge into one written dirty): an FWRITE
    carrying the new mode, not an ATTRIB that leaves the old content."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.chmod(tree + b"/file", 0o755)
    _rewrite_keeping_size_and_mtime(tree + b"/file", b"HELLO")
    chs, _ = reconcile(tree + b"/file", ident, store, Watches(), written=True)
    assert records(chs) == [(Action.FWRITE, tree + b"/file")]
    assert chs[0].record is not None and chs[0].record.meta.mode == 0o755
    chs, _ = reconcile(tree + b"/file", ident, store, Watches(), written=False)
    assert records(chs) == [(Action.ATTRIB, tree + b"/file")]


def test_live_rename_and_link_fetch_nothing_again(tree, store):
    """A rename or a new hard link moves a file's ctime; the path's events were
    read, so neither reconcile nor the listing that follows fetches it again."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.link(tree + b"/file", tree + b"/a/hard")
    chs, follow = reconcile(tree + b"/file", ident, store, Watches())
    assert chs and records(chs) == []  # stored with its new ctime, nothing sent
    store.commit([], [c.op for c in chs])
    assert follow is None
    os.rename(tree + b"/a-b/g", tree + b"/a-b/g2")
    store.commit([], [MoveTree(tree + b"/a-b/g", tree + b"/a-b/g2")])
    chs, _ = reconcile(tree + b"/a-b/g2", ident, store, Watches())
    assert records(chs) == []
    os.link(tree + b"/a/deep/f", tree + b"/a/deep/f2")
    chs = run(tree + b"/a/deep", ident, store, listing=True)
    assert records(chs) == [(Action.FWRITE, tree + b"/a/deep/f2")]


def test_reconcile_directory_follow_ups(tree, store):
    """A known dir whose entries changed asks for a listing; recursive asks for a tree walk."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    with open(tree + b"/a/new", "wb"):
        pass
    chs, follow = reconcile(tree + b"/a", ident, store, Watches())
    assert records(chs) == [] and [type(c.op) for c in chs] == [Put]
    assert follow == ListingWalk(tree + b"/a")
    store.commit([], [c.op for c in chs])
    listing = run(tree + b"/a", ident, store, listing=True)
    assert records(listing) == [(Action.FWRITE, tree + b"/a/new")]
    _, follow = reconcile(tree + b"/a", ident, store, Watches(), recursive=True)
    assert follow == TreeWalk(tree + b"/a")


def test_reconcile_anchors_at_highest_missing_ancestor(tree, store):
    """A path whose parent is not in the snapshot reconciles the missing ancestor instead."""
    ident = Identity([tree], [tree + b"/skip"])
    run(tree, ident, store)
    os.makedirs(tree + b"/n1/n2")
    with open(tree + b"/n1/n2/f", "wb"):
        pass
    chs, follow = reconcile(tree + b"/n1/n2/f", ident, store, Watches())
    assert records(chs) == [(Action.CREATE, tree + b"/n1")]
    assert follow == TreeWalk(tree + b"/n1")


def test_disk_entry_skips_unmirrored(tree):
    """disk_entry gives None for a fifo or a missing path, the link target for a symlink."""
    assert disk_entry(tree + b"/fifo") is None
    assert disk_entry(tree + b"/nope") is None
    assert disk_entry(tree + b"/link").target == b"file"


def test_move_meta_carries_the_moved_entrys_fields():
    """A MOVE names the moved file's mode, owner, size and mtime; a link's carries none."""
    from mirrord.values import move_meta

    meta = move_meta(E(kind=FILE, mode=0o640, uid=7, gid=8, size=42, mtime=99))
    assert (meta.mode, meta.uid, meta.gid, meta.size, meta.mtime_ns) == (0o640, 7, 8, 42, 99)
    assert move_meta(E(kind=DIR, mode=0o750)).size is None
    assert move_meta(E(kind=LINK, target=b"x")) == Meta()


# -- directories we may not read ---------------------------------------------------
class Refusing(Watches):
    """A watch that refuses ``locked`` as the kernel refuses an unreadable directory."""

    def __init__(self, *locked: bytes):
        super().__init__()
        self.locked = set(locked)

    def __call__(self, path: bytes) -> bool:
        super().__call__(path)
        if path in self.locked:
            raise PermissionError(13, "inotify_add_watch: Permission denied")
        return True


def locked_tree(tmp_path):
    root = tmp_path / "lt"
    (root / "locked" / "sub").mkdir(parents=True)
    (root / "locked" / "keep").write_bytes(b"k")
    (root / "locked" / "sub" / "deep").write_bytes(b"d")
    (root / "open").mkdir()
    (root / "open" / "f").write_bytes(b"f")
    return os.fsencode(root)


def test_unreadable_directory_never_fails_a_walk_nor_deletes_below_it(tmp_path, store):
    """A directory that cannot be watched or listed is stored unreadable and sent as
    CREATE unreadable=1; a walk goes on past it, and what the snapshot has below it from
    when it was readable is neither walked nor DELETEd."""
    root = locked_tree(tmp_path)
    ident = Identity([root], [])
    locked = root + b"/locked"
    run(root, ident, store)  # readable at first: the snapshot has what is below it
    reported: list[bytes] = []
    chs = run(root, ident, store, Refusing(locked), report=lambda p, e: reported.append(p))
    assert reported == [locked]
    assert [
        (c.record.action, c.record.path, c.record.meta.unreadable) for c in chs if c.record
    ] == [(Action.CREATE, locked, True)]
    assert store.get(locked).unreadable
    assert store.get(locked + b"/sub/deep") is not None
    for full in (True, False):  # later walks: nothing new, nothing deleted, still counted
        chs = run(root, ident, store, Refusing(locked), full=full)
        assert records(chs) == []
        assert Put(locked, store.get(locked)) in [c.op for c in chs]


def test_first_walk_of_unreadable_directory_stores_nothing_below_it(tmp_path, store):
    """On a first walk an unreadable directory is an unreadable CREATE and nothing else."""
    root = locked_tree(tmp_path)
    locked = root + b"/locked"
    chs = run(root, Identity([root], []), store, Refusing(locked))
    assert (Action.CREATE, locked) in records(chs)
    assert not [p for p, _ in store.walk() if p.startswith(locked + b"/")]
    assert (Action.FWRITE, root + b"/open/f") in records(chs)


def test_readable_again_sends_everything_below_and_deletes_what_went(tmp_path, store):
    """Once it can be read (even in a walk trusting unchanged directories), everything
    below it is sent as new (a client that joined meanwhile has none of it) and what is
    gone from it meanwhile is DELETEd."""
    root = locked_tree(tmp_path)
    ident = Identity([root], [])
    locked = root + b"/locked"
    run(root, ident, store)
    run(root, ident, store, Refusing(locked))
    os.unlink(locked + b"/keep")
    with open(locked + b"/new", "wb") as f:
        f.write(b"n")
    chs = run(root, ident, store, full=False)
    assert records(chs) == [
        (Action.DELETE, locked + b"/keep"),
        (Action.FWRITE, locked + b"/new"),
        (Action.CREATE, locked + b"/sub"),
        (Action.FWRITE, locked + b"/sub/deep"),
    ]
    assert not store.get(locked).unreadable
    assert records(run(root, ident, store, full=False)) == []


def test_entry_that_cannot_be_stat_ed_is_kept(tmp_path, store):
    """An lstat failing for another reason than "gone" (here ENAMETOOLONG) neither fails
    the walk nor deletes the entry: it stays as the snapshot has it, and is reported."""
    root = locked_tree(tmp_path)
    ident = Identity([root], [])
    run(root, ident, store)
    odd = root + b"/open/" + b"n" * 300  # no such name can exist: lstat says ENAMETOOLONG
    store.commit([], [Put(odd, E())])
    with pytest.raises(OSError):
        disk_entry(odd, strict=True)
    assert disk_entry(odd) is None
    reported: list[bytes] = []
    chs = run(root, ident, store, full=False, report=lambda p, e: reported.append(p))
    assert records(chs) == [] and store.get(odd) == E()
    assert reported == [odd]


def test_nothing_changes_below_an_unreadable_directory_on_events(tmp_path, store):
    """reconcile of a path below a directory stored unreadable changes nothing."""
    root = locked_tree(tmp_path)
    ident = Identity([root], [])
    locked = root + b"/locked"
    run(root, ident, store)
    run(root, ident, store, Refusing(locked))
    os.unlink(locked + b"/keep")
    assert reconcile(locked + b"/keep", ident, store, Watches()) == ([], None)


def test_reconcile_of_a_directory_readable_again_walks_it_keeping_the_flag(tmp_path, store):
    """The IN_ATTRIB of a chmod back: the directory is walked, its flag kept until the
    walk has sent what is below it."""
    root = locked_tree(tmp_path)
    ident = Identity([root], [])
    locked = root + b"/locked"
    run(root, ident, store)
    run(root, ident, store, Refusing(locked))
    chs, follow = reconcile(locked, ident, store, Watches())
    assert follow == TreeWalk(locked)
    assert all(c.op.entry.unreadable for c in chs)


def test_diff_of_a_directory_becoming_unreadable_is_an_unreadable_create():
    """readable -> unreadable: CREATE with unreadable=1 and its metadata; back: ATTRIB only."""
    d = E(DIR, size=0)
    locked = Entry(DIR, 0, 1, 2, 0, 10, 20, unreadable=True)
    assert diff(P, d, locked) == [
        Record(Action.CREATE, P, meta=Meta(mode=0, uid=1, gid=2, mtime_ns=10, unreadable=True))
    ]
    assert diff(P, locked, d) == [Record(Action.ATTRIB, P, meta=Meta(mode=0o644, uid=1, gid=2))]
