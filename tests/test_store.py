"""mirrord.store on real Berkeley DB files in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mirrord.store import DIR, FILE, LINK, MIN_CACHE, Entry, Store, StoreError, cache_for, path_key
from mirrord.values import Drop, DropTree, MoveTree, Put
from protocol.records import Action, Record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry(kind: bytes = FILE, size: int = 0, target: bytes = b"") -> Entry:
    return Entry(kind, 0o644, 1000, 1000, size, 1_700_000_000_123_456_789, 5, target)


def rec(path: bytes) -> Record:
    return Record(Action.FWRITE, path)


def paths(rows: list[tuple[bytes, Entry]]) -> list[bytes]:
    return [p for p, _ in rows]


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db"))
    yield s
    s.close()


def test_entry_pack_roundtrip():
    """An entry, symlink target included, survives pack/unpack unchanged."""
    e = Entry(LINK, 0o777, 2**32 - 1, 7, 0, -5, 2**62, b"../t\0arget\xff")
    assert Entry.unpack(e.pack()) == e


def test_entry_from_stat_kinds(tmp_path):
    """from_stat maps dir/file/link and refuses a fifo, which is never mirrored."""
    (tmp_path / "f").write_bytes(b"abc")
    os.chmod(tmp_path / "f", 0o4751)
    st = os.lstat(tmp_path / "f")
    f = Entry.from_stat(st)
    assert (f.kind, f.mode, f.size, f.mtime_ns) == (FILE, 0o4751, 3, st.st_mtime_ns)
    assert Entry.from_stat(os.lstat(tmp_path)).kind == DIR
    os.mkfifo(tmp_path / "p")
    with pytest.raises(ValueError):
        Entry.from_stat(os.lstat(tmp_path / "p"))


def test_new_store_then_reopen_keeps_session_and_head(tmp_path):
    """A fresh home is created with a 32-hex session; reopening keeps session and head."""
    home = str(tmp_path / "db")
    s = Store(home)
    assert s.created and s.head == 0 and s.oldest == 1
    assert len(s.session) == 32 and int(s.session, 16) >= 0
    s.commit([rec(b"/a"), rec(b"/b")], [Put(b"/a", entry())])
    session = s.session
    s.close()
    s = Store(home)
    try:
        assert not s.created
        assert (s.session, s.head, s.oldest) == (session, 2, 1)
        assert s.get(b"/a") == entry()
    finally:
        s.close()


def test_first_load_cut_short_is_still_created_when_reopened(tmp_path):
    """A bulk load not finished with sync=True leaves the store created on reopen."""
    home = str(tmp_path / "db")
    s = Store(home)
    session = s.session
    s.load([Put(b"/a", entry(DIR))], sync=False)
    s.close()
    s = Store(home)
    try:
        assert s.created and s.session == session and s.get(b"/a") == entry(DIR)
        s.load([Put(b"/a/b", entry())], chunk=1, sync=False)
        s.load((), sync=True)
    finally:
        s.close()
    s = Store(home)
    try:
        assert not s.created and s.session == session and s.get(b"/a/b") == entry()
    finally:
        s.close()


def test_serials_start_at_one_and_grow_by_one(store):
    """Serials are 1, 2, 3... across commits, and log_after returns the encoded lines."""
    assert store.commit([rec(b"/x")], []) == 1
    assert store.commit([rec(b"/y"), Record(Action.MOVE, b"/y", b"/z")], []) == 3
    assert store.commit([], [Put(b"/q", entry())]) == 3
    log = store.log_after(0, 10)
    assert [s for s, _ in log] == [1, 2, 3]
    assert [Record.decode(line) for _, line in log] == [
        rec(b"/x"),
        rec(b"/y"),
        Record(Action.MOVE, b"/y", b"/z"),
    ]
    assert [s for s, _ in store.log_after(1, 1)] == [2]
    assert store.log_after(3, 10) == []


def test_trim_keeps_loglen_and_head_survives_empty_log(tmp_path):
    """The log keeps the newest loglen records; head persists even when none are kept."""
    home = str(tmp_path / "db")
    s = Store(home, loglen=3)
    s.commit([rec(b"/%d" % i) for i in range(5)], [])
    assert (s.head, s.oldest) == (5, 3)
    assert [n for n, _ in s.log_after(0, 100)] == [3, 4, 5]
    s.commit([rec(b"/six")], [])
    assert [n for n, _ in s.log_after(0, 100)] == [4, 5, 6]
    s.close()
    s = Store(home, loglen=0)
    s.commit([rec(b"/seven")], [])
    assert (s.head, s.oldest, s.log_after(0, 10)) == (7, 8, [])
    s.close()
    s = Store(home, loglen=0)
    try:
        assert (s.head, s.oldest) == (7, 8)
        assert s.commit([rec(b"/eight")], []) == 8
    finally:
        s.close()


TREE = [b"/a", b"/a/b", b"/a/b/c", b"/a/b/c/d", b"/a/b-x", b"/a/b-x/y", b"/a/b.", b"/a/c"]


def load_tree(store: Store) -> None:
    store.load([Put(p, entry(DIR)) for p in TREE])


def test_keys_sort_depth_first_with_sibling_prefixes(store):
    """Key order is a DFS walk: /a/b's sub-tree comes before its sibling /a/b-x."""
    load_tree(store)
    assert paths(store.iter_tree()) == TREE
    assert path_key(b"/a/b") == b"\0a\0b"


def test_deltree_removes_only_the_subtree(store):
    """deltree /a/b removes it and /a/b/..., never the sibling /a/b-x."""
    load_tree(store)
    store.commit([], [DropTree(b"/a/b")])
    assert paths(store.iter_tree()) == [b"/a", b"/a/b-x", b"/a/b-x/y", b"/a/b.", b"/a/c"]
    store.commit([], [Drop(b"/a/c"), Drop(b"/absent")])
    assert store.get(b"/a/c") is None


def test_move_renames_subtree_and_replaces_destination(store):
    """move /a/b -> /a/b-x takes the whole sub-tree and drops what was at the destination."""
    load_tree(store)
    store.commit([], [Put(b"/a/b/c/d", entry(FILE, size=9))])
    store.commit([Record(Action.MOVE, b"/a/b", b"/a/b-x")], [MoveTree(b"/a/b", b"/a/b-x")])
    assert paths(store.iter_tree()) == [
        b"/a",
        b"/a/b-x",
        b"/a/b-x/c",
        b"/a/b-x/c/d",
        b"/a/b.",
        b"/a/c",
    ]
    assert store.get(b"/a/b-x/c/d").size == 9


def test_big_move_in_one_commit(store):
    """A 12,000-entry sub-tree moves in one transaction (there is no lock table to fill)."""
    ops = [Put(b"/big", entry(DIR))]
    ops += [Put(b"/big/d%02d" % i, entry(DIR)) for i in range(12)]
    ops += [Put(b"/big/d%02d/f%04d" % (i, j), entry()) for i in range(12) for j in range(1000)]
    store.load(ops)
    store.commit([], [MoveTree(b"/big", b"/moved")])
    assert store.get(b"/big/d00") is None
    assert len(list(store.walk(b"/moved"))) == len(ops)


def test_iter_tree_chunks_resume_and_root(store):
    """iter_tree pages in DFS order, resumes after a key, and stays inside root."""
    load_tree(store)
    first = store.iter_tree(limit=3)
    assert paths(first) == TREE[:3]
    assert paths(store.iter_tree(after=first[-1][0], limit=3)) == TREE[3:6]
    assert paths(store.iter_tree(root=b"/a/b")) == [b"/a/b", b"/a/b/c", b"/a/b/c/d"]
    assert paths(store.iter_tree(root=b"/a/b", after=b"/a/b/c")) == [b"/a/b/c/d"]
    assert paths(store.iter_tree(after=b"/a/b", skip_subtree=True)) == TREE[4:]
    assert paths(store.walk(b"/a", chunk=2)) == TREE


def test_children_are_direct_only(store):
    """children lists direct children in name order, skipping grandchildren."""
    load_tree(store)
    assert paths(store.children(b"/a", chunk=2)) == [b"/a/b", b"/a/b-x", b"/a/b.", b"/a/c"]
    assert paths(store.children_chunk(b"/a", after=b"b-x")) == [b"/a/b.", b"/a/c"]
    assert paths(store.children(b"/a/c")) == []


def test_root_slash(store):
    """The root directory itself is a valid path with every other path inside it."""
    store.load([Put(b"/", entry(DIR)), Put(b"/x", entry()), Put(b"/x/y", entry())])
    assert paths(store.iter_tree(root=b"/")) == [b"/", b"/x", b"/x/y"]
    assert paths(store.children(b"/")) == [b"/x"]


def test_transaction_reads_its_own_writes(store):
    """A write batch sees its own puts before commit; others see them only after."""
    with store.transaction():
        store.apply([Put(b"/n", entry())])
        store.append([rec(b"/n")])
        assert store.get(b"/n") == entry()
    assert store.head == 1
    assert store.get(b"/n") == entry()


def test_second_open_is_refused(tmp_path):
    """A home in use by another Store is refused with a clear error."""
    s = Store(str(tmp_path / "db"))
    try:
        with pytest.raises(StoreError, match="in use"):
            Store(str(tmp_path / "db"))
    finally:
        s.close()


def test_newer_schema_is_refused(tmp_path):
    """A database written by a newer schema version is refused, naming the version."""
    s = Store(str(tmp_path / "db"))
    with s.transaction():
        s._meta.put(b"schema", b"99", txn=s._txn)
    s.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(str(tmp_path / "db"))


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from mirrord.store import Store, Entry
    from mirrord.values import Put
    from protocol.records import Record, Action
    s = Store(sys.argv[1])
    n = 0
    while True:
        n += 1
        e = Entry(b"f", 0o644, 0, 0, n, n, n)
        head = s.commit([Record(Action.FWRITE, b"/f%d" % n)], [Put(b"/f%d" % n, e)])
        sys.stdout.write("%d\\n" % head)
        sys.stdout.flush()
""")


def test_kill_9_keeps_every_committed_record(tmp_path):
    """A writer SIGKILLed mid-loop leaves a database that reopens with every reported serial."""
    home = str(tmp_path / "db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, home, ROOT], stdout=subprocess.PIPE)
    try:
        last = 0
        for line in proc.stdout:
            last = int(line)
            if last >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last >= 60
    s = Store(home)
    try:
        assert s.head >= last
        log = s.log_after(0, s.head + 10)
        assert [n for n, _ in log] == list(range(1, s.head + 1))
        assert Record.decode(log[last - 1][1]) == Record(Action.FWRITE, b"/f%d" % last)
        assert s.get(b"/f%d" % last).size == last
    finally:
        s.close()


def test_unreadable_flag_round_trips_beside_the_mode(tmp_path):
    """A directory's unreadable flag is stored and read back; its mode stays its own."""
    s = Store(str(tmp_path / "db"))
    try:
        locked = Entry(DIR, 0o7777, 1, 2, 0, 10, 20, unreadable=True)
        s.commit([], [Put(b"/a", locked), Put(b"/b", Entry(DIR, 0o7777, 1, 2, 0, 10, 20))])
        assert s.get(b"/a") == locked
        assert s.get(b"/b").unreadable is False and s.get(b"/b").mode == 0o7777
        assert Entry.unpack(locked.pack()) == locked
    finally:
        s.close()


def test_schema_1_database_is_read_and_marked_2(tmp_path):
    """A version 1 database (no unreadable flags) opens, its entries readable, as version 2."""
    s = Store(str(tmp_path / "db"))
    s.commit([], [Put(b"/a", Entry(DIR, 0o755, 1, 2, 0, 10, 20))])
    s._meta.put(b"schema", b"1")
    s.close()
    s = Store(str(tmp_path / "db"))
    try:
        assert int(s._meta.get(b"schema")) == 2
        assert s.get(b"/a") == Entry(DIR, 0o755, 1, 2, 0, 10, 20)
        assert s.created is False
    finally:
        s.close()


def test_database_of_a_release_with_the_locking_subsystem_opens_with_its_entries(
    tmp_path, monkeypatch
):
    """Releases up to 0.1 opened the environment with DB_INIT_LOCK; their datadirs
    open as they are (DB_RECOVER rebuilds the regions) and keep every entry."""
    import mirrord.store

    old_flags = mirrord.store._ENV_FLAGS | mirrord.store.db.DB_INIT_LOCK
    monkeypatch.setattr(mirrord.store, "_ENV_FLAGS", old_flags)
    s = Store(str(tmp_path / "db"))
    s.commit([rec(b"/a")], [Put(b"/a", entry(DIR))])
    session = s.session
    s.close()
    monkeypatch.undo()
    s = Store(str(tmp_path / "db"))
    try:
        assert (s.session, s.head, s.get(b"/a")) == (session, 1, entry(DIR))
        assert s.created is False
    finally:
        s.close()


def test_cache_is_sized_to_the_stored_tree_within_its_bounds(tmp_path):
    home = str(tmp_path)
    assert cache_for(home, 64 << 20) == MIN_CACHE  # a first boot: nothing stored yet
    assert cache_for(home, 2 << 20) == 2 << 20  # the configured size is the most
    with open(tmp_path / "snapshot", "wb") as f:
        f.truncate(16 << 20)
    with open(tmp_path / "wmlog", "wb") as f:
        f.truncate(8 << 20)
    assert cache_for(home, 64 << 20) == 30 << 20  # the B-trees and a quarter more
    assert cache_for(home, 20 << 20) == 20 << 20


def test_store_reopens_with_a_cache_grown_to_its_tree(tmp_path):
    s = Store(str(tmp_path / "db"), cache_bytes=256 << 20)
    s.load([Put(b"/d%06d" % i, entry()) for i in range(60_000)])
    s.close()
    s = Store(str(tmp_path / "db"), cache_bytes=256 << 20)
    try:
        gbytes, nbytes, _ = s._env.get_cachesize()
        assert (gbytes << 30) + nbytes > MIN_CACHE
        assert s.get(b"/d059999") == entry()
    finally:
        s.close()
