"""The snapshot, the change log (wmLog) and the session, in Berkeley DB B-trees.

This is the only module that imports Berkeley DB. Every call runs on the
reactor thread, in short transactions that begin and end inside one call or
one reactor callback: a turn's changes (``transaction()``), one chunk of a
bulk load, one chunk of a read. Nothing holds a cursor or a transaction
across reactor turns, because the same thread is the only writer: a cursor
left open by an INIT stream would hold page locks that the next commit on
this thread waits for forever. One thread also means no BDB thread handles
(no DB_THREAD) and no lock contention; the price is that a commit (one
fsync) runs on the reactor, which is why the journal batches a turn.

Layout: ``meta`` (schema version, session id, head serial, ``loading`` while
a first load runs), ``snapshot`` (key = path with ``/`` replaced by NUL, so
key order is a depth-first walk with children sorted by name and a sub-tree
is the key range that starts with ``key + NUL``) and ``wmlog`` (8-byte
big-endian serial -> encoded record). The environment is opened with
DB_RECOVER, so reopening after ``kill -9`` replays the log; an ``fcntl``
lock on ``home/lock`` keeps a second process from running it under a live one.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

try:  # pragma: no cover - whichever binding is installed
    from berkeleydb import db  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from bsddb3 import db  # type: ignore[import-not-found,no-redef]

from protocol.records import Record

__all__ = ["DIR", "FILE", "LINK", "Entry", "Store", "StoreError", "path_key"]

SCHEMA_VERSION = 2  # 2: the unreadable flag on directories (version 1 never sets it)
DIR, FILE, LINK = b"d", b"f", b"l"
_KINDS = {0o040000: DIR, 0o100000: FILE, 0o120000: LINK}
_ENTRY = struct.Struct(">cHIIQqq")
_UNREADABLE = 0x8000  # in the stored mode field, above the 12 permission bits
_SERIAL = struct.Struct(">Q")
_CHUNK = 1000
_ENV_FLAGS = db.DB_CREATE | db.DB_INIT_TXN | db.DB_INIT_LOCK | db.DB_INIT_LOG | db.DB_INIT_MPOOL
_ENV_FLAGS |= db.DB_RECOVER


class StoreError(Exception):
    """The database cannot be used (newer schema, locked by another process)."""


def kind_of(st_mode: int) -> bytes | None:
    """``DIR``, ``FILE`` or ``LINK`` for a stat mode; None for types never mirrored."""
    return _KINDS.get(st_mode & 0o170000)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the snapshot remembers of one path: enough to detect any change."""

    kind: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    target: bytes = b""
    #: a directory mirrord could not list: what is below it stays as it was
    unreadable: bool = False

    @classmethod
    def from_stat(cls, st: os.stat_result, target: bytes = b"") -> Entry:
        kind = kind_of(st.st_mode)
        if kind is None:
            raise ValueError(f"file type {st.st_mode & 0o170000:#o} is not mirrored")
        size = st.st_size if kind == FILE else 0
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
        return cls(kind, mode, uid, gid, size, st.st_mtime_ns, st.st_ctime_ns, target)

    def pack(self) -> bytes:
        mode = self.mode | _UNREADABLE if self.unreadable else self.mode
        fields = (self.kind, mode, self.uid, self.gid, self.size, self.mtime_ns, self.ctime_ns)
        return _ENTRY.pack(*fields) + self.target

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        kind, mode, uid, gid, size, mtime_ns, ctime_ns = _ENTRY.unpack_from(data)
        return cls(
            kind,
            mode & ~_UNREADABLE,
            uid,
            gid,
            size,
            mtime_ns,
            ctime_ns,
            data[_ENTRY.size :],
            bool(mode & _UNREADABLE),
        )


def path_key(path: bytes) -> bytes:
    """The snapshot key of an absolute path (``/`` itself is the empty key)."""
    return b"" if path == b"/" else path.replace(b"/", b"\0")


Op = tuple[Any, ...]


class _Reader:
    """Reads of the snapshot and log; ``_txn`` None reads committed data."""

    _snap: Any
    _log: Any
    _txn: Any = None

    def get(self, path: bytes) -> Entry | None:
        data = self._snap.get(path_key(path), txn=self._txn)
        return None if data is None else Entry.unpack(data)

    def _range(
        self,
        start: bytes,
        inclusive: bool,
        within: bytes | None,
        limit: int,
        skip_children: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Rows from ``start`` in key order; with ``within``, only that key and its sub-tree."""
        out: list[tuple[bytes, bytes]] = []
        below = None if within is None else within + b"\0"
        cursor = self._snap.cursor(txn=self._txn)
        try:
            item = cursor.set_range(start)
            while item is not None and len(out) < limit:
                key, data = item
                if below is not None and key != within and not key.startswith(below):
                    break
                if skip_children and below is not None and b"\0" in key[len(below) :]:
                    name = key[len(below) :].partition(b"\0")[0]  # a grandchild: skip its branch
                    item = cursor.set_range(below + name + b"\x01")
                    continue
                if key == start and not inclusive:
                    item = cursor.set_range(key + b"\x01") if skip_children else cursor.next()
                    continue
                out.append((key, data))
                # skip_children jumps over this row's own sub-tree
                item = cursor.set_range(key + b"\x01") if skip_children else cursor.next()
        finally:
            cursor.close()
        return out

    def iter_tree(
        self,
        root: bytes | None = None,
        after: bytes | None = None,
        limit: int = _CHUNK,
        skip_subtree: bool = False,
    ) -> list[tuple[bytes, Entry]]:
        """One chunk of the snapshot in key (depth-first) order, no cursor left open.

        Starts after path ``after`` (or after its whole sub-tree with
        ``skip_subtree``), restricted to ``root`` and its sub-tree when given.
        """
        within = None if root is None else path_key(root)
        start, inclusive = (b"" if within is None else within), True
        if after is not None:
            akey = path_key(after)
            start, inclusive = (akey + b"\x01", True) if skip_subtree else (akey, False)
        rows = self._range(start, inclusive, within, limit)
        return [(k.replace(b"\0", b"/") or b"/", Entry.unpack(v)) for k, v in rows]  # key -> path

    def walk(self, root: bytes | None = None, chunk: int = _CHUNK) -> Iterator[tuple[bytes, Entry]]:
        """Every entry under ``root`` in key order, read chunk by chunk."""
        after = None
        while True:
            rows = self.iter_tree(root, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def children_chunk(
        self, dir_path: bytes, after: bytes | None = None, limit: int = _CHUNK
    ) -> list[tuple[bytes, Entry]]:
        """Up to ``limit`` direct children of ``dir_path`` whose name sorts after ``after``."""
        dkey = path_key(dir_path)
        prefix = dkey + b"\0"
        start, inclusive = (prefix, True) if after is None else (prefix + after, False)
        rows = self._range(start, inclusive, dkey, limit, skip_children=True)
        base = b"" if dir_path == b"/" else dir_path
        return [(base + b"/" + k[len(prefix) :], Entry.unpack(v)) for k, v in rows]

    def children(self, dir_path: bytes, chunk: int = _CHUNK) -> Iterator[tuple[bytes, Entry]]:
        """Direct children of ``dir_path`` as (path, entry), chunk by chunk."""
        after = None
        while True:
            rows = self.children_chunk(dir_path, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0].rpartition(b"/")[2]


class Store(_Reader):
    """One BDB environment in ``home``: snapshot, wmLog and session."""

    def __init__(self, home: str, cache_bytes: int = 64 << 20, loglen: int = 1_000_000) -> None:
        os.makedirs(home, exist_ok=True)
        self.home, self.loglen = home, loglen
        self._lockfile = open(os.path.join(home, "lock"), "a+b")  # noqa: SIM115
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise StoreError(f"{home} is in use by another process") from None
        env = db.DBEnv()
        env.set_cachesize(cache_bytes >> 30, cache_bytes & ((1 << 30) - 1), 1)
        env.set_lg_bsize(1 << 20)
        env.set_lg_max(16 << 20)
        env.set_lk_max_locks(200_000)
        env.set_lk_max_objects(200_000)
        try:
            env.open(home, _ENV_FLAGS)
        except db.DBError as e:
            self._lockfile.close()
            raise StoreError(f"cannot open the database in {home}: {e}") from e
        env.log_set_config(db.DB_LOG_AUTO_REMOVE, 1)
        self._env = env
        self._meta = self._open("meta")
        self._snap = self._open("snapshot")
        self._log = self._open("wmlog")
        self._commits = 0
        self._setup()

    def _open(self, name: str) -> Any:
        handle = db.DB(self._env)
        handle.set_get_returns_none(2)
        handle.open(name, dbtype=db.DB_BTREE, flags=db.DB_CREATE | db.DB_AUTO_COMMIT)
        return handle

    def _setup(self) -> None:
        version = self._meta.get(b"schema")
        if version is not None and int(version) > SCHEMA_VERSION:
            self.close()
            raise StoreError(
                f"database in {self.home} has schema version {int(version)}, newer "
                f"than this mirrord ({SCHEMA_VERSION}): upgrade mirrord"
            )
        fresh = self._meta.get(b"session") is None
        if not fresh and (version is None or int(version) < SCHEMA_VERSION):
            # 1 -> 2: nothing to convert, a version 1 entry has the unreadable bit clear
            self._meta.put(b"schema", b"%d" % SCHEMA_VERSION)
        self._loading = self._meta.get(b"loading") is not None  # a first load cut short
        self.created = fresh or self._loading  # (loaded again, not logged as changes)
        if fresh:
            txn = self._env.txn_begin()
            self._meta.put(b"schema", b"%d" % SCHEMA_VERSION, txn=txn)
            self._meta.put(b"session", os.urandom(16).hex().encode("ascii"), txn=txn)
            self._meta.put(b"head", _SERIAL.pack(0), txn=txn)
            txn.commit()
        self.session: str = self._meta.get(b"session").decode("ascii")
        self.head: int = _SERIAL.unpack(self._meta.get(b"head"))[0]
        cursor = self._log.cursor()
        try:
            first = cursor.first()
        finally:
            cursor.close()
        self.oldest: int = _SERIAL.unpack(first[0])[0] if first else self.head + 1

    def transaction(self) -> Batch:
        """A write batch whose reads see its own writes; ``commit()`` makes it durable."""
        return Batch(self)

    def commit(self, records: Sequence[Record], ops: Iterable[Op]) -> int:
        """Append ``records`` as head+1.., apply ``ops``, trim the log: one durable txn."""
        batch = Batch(self)
        try:
            batch.apply(ops)
            batch.append(records)
        except BaseException:
            batch.abort()
            raise
        return batch.commit()

    def load(self, ops: Iterable[Op], chunk: int = 5000, *, sync: bool = True) -> None:
        """Bulk snapshot load (first boot): chunked transactions, one sync at the end.

        ``sync=False`` leaves the sync to a later call (a caller loading piecemeal).
        Until a ``sync=True`` call ends the load, a reopened store is ``created``.
        """
        batch = Batch(self)
        try:
            if not self._loading:
                self._meta.put(b"loading", b"1", txn=batch._txn)
            for n, op in enumerate(ops, 1):
                batch.apply((op,))
                if n % chunk == 0:
                    batch.commit(sync=False)
                    batch = Batch(self)
            if sync:
                self._meta.delete(b"loading", txn=batch._txn)
        except BaseException:
            batch.abort()
            raise
        batch.commit(sync=False)
        self._loading = not sync
        if sync:
            self._env.log_flush()
            self._env.txn_checkpoint(0, 0)

    def log_after(self, serial: int, limit: int = _CHUNK) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (serial, encoded record) pairs with serials above ``serial``."""
        out: list[tuple[int, bytes]] = []
        cursor = self._log.cursor()
        try:
            item = cursor.set_range(_SERIAL.pack(max(serial + 1, 0)))
            while item is not None and len(out) < limit:
                out.append((_SERIAL.unpack(item[0])[0], item[1]))
                item = cursor.next()
        finally:
            cursor.close()
        return out

    def close(self) -> None:
        if self._env is None:
            return
        self._env.txn_checkpoint(0, 0)  # short recovery next time; lets old logs go
        for handle in (self._log, self._snap, self._meta):
            handle.close()
        self._env.close()
        self._env = None
        self._lockfile.close()


class Batch(_Reader):
    """One open write transaction; lives inside a single call or reactor turn."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._snap, self._log = store._snap, store._log
        self._txn = store._env.txn_begin()
        self.head = store.head
        self._oldest = store.oldest

    def append(self, records: Iterable[Record]) -> None:
        for record in records:
            self.head += 1
            self._log.put(_SERIAL.pack(self.head), record.encode(), txn=self._txn)
        while self.head - self._oldest + 1 > self._store.loglen:
            self._log.delete(_SERIAL.pack(self._oldest), txn=self._txn)
            self._oldest += 1

    def apply(self, ops: Iterable[Op]) -> None:
        snap, txn = self._snap, self._txn
        for op in ops:
            name = op[0]
            if name == "put":
                snap.put(path_key(op[1]), op[2].pack(), txn=txn)
            elif name == "del":
                try:
                    snap.delete(path_key(op[1]), txn=txn)
                except db.DBNotFoundError:
                    pass
            elif name == "deltree":
                self._deltree(path_key(op[1]))
            elif name == "move":
                self._move(op[1], op[2])
            else:
                raise ValueError(f"unknown op {name!r}")

    def _subtree(self, key: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return self._range(key, True, key, limit)

    def _deltree(self, key: bytes) -> None:
        while rows := self._subtree(key, _CHUNK):
            for k, _ in rows:
                self._snap.delete(k, txn=self._txn)
            if len(rows) < _CHUNK:
                return

    def _move(self, src: bytes, dst: bytes) -> None:
        skey, dkey = path_key(src), path_key(dst)
        if skey == dkey:
            return
        if dkey.startswith(skey + b"\0"):
            raise ValueError(f"cannot move {src!r} into itself")
        self._deltree(dkey)
        while rows := self._subtree(skey, _CHUNK):
            for k, v in rows:
                self._snap.delete(k, txn=self._txn)
                self._snap.put(dkey + k[len(skey) :], v, txn=self._txn)
            if len(rows) < _CHUNK:
                return

    def abort(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    def commit(self, sync: bool = True) -> int:
        store = self._store
        if self.head != store.head:
            store._meta.put(b"head", _SERIAL.pack(self.head), txn=self._txn)
        self._txn.commit(0 if sync else db.DB_TXN_NOSYNC)
        self._txn = None
        store.head = self.head
        store.oldest = self._oldest if self._oldest <= self.head else self.head + 1
        store._commits += 1
        if store._commits % 256 == 0:  # lets DB_LOG_AUTO_REMOVE drop old log files
            store._env.txn_checkpoint(1024, 1)
        return self.head
