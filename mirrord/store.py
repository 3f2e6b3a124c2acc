"""The snapshot, the change log (wmLog) and the session, in Berkeley DB B-trees.

This is the only module that imports Berkeley DB. Every call runs on the
reactor thread, in short transactions that begin and end inside one call or
one reactor callback: a turn's changes (``with store.transaction():``, whose
reads see its own writes), one chunk of a bulk load, one chunk of a read.
Nothing holds a cursor or a transaction across reactor turns, because the
same thread is the only writer: a cursor left open by an INIT stream would
hold page locks that the next commit on this thread waits for forever. One
thread also means no BDB thread handles (no DB_THREAD) and no locking
subsystem at all (no DB_INIT_LOCK): transactions still give atomic,
durable commits and aborts through the log, and there is nobody to isolate
from. The lock table it spared was sized for a whole-tree MOVE in one
transaction (200,000 page locks) and held 26 MiB of every idle mirrord's
memory. The price is that a commit (one fsync) runs on the reactor,
which is why the journal batches a turn.

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
from contextlib import AbstractContextManager, contextmanager
from typing import cast

try:  # pragma: no cover - whichever binding is installed
    # untyped C bindings; which one is installed varies, so an ignore may be unused
    from berkeleydb import db  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError:  # pragma: no cover
    from bsddb3 import db  # type: ignore[import-not-found,import-untyped,no-redef,unused-ignore]

from mirrord.snapshot import CHUNK, SnapshotReads, Table, Txn, path_key
from mirrord.values import DIR, FILE, LINK, Drop, DropTree, Entry, MoveTree, Op, Put, kind_of
from protocol.records import Record

__all__ = ["DIR", "FILE", "LINK", "Entry", "Store", "StoreError", "kind_of", "path_key"]

SCHEMA_VERSION = 2  # 2: the unreadable flag on directories (version 1 never sets it)
_SERIAL = struct.Struct(">Q")
_ENV_FLAGS = db.DB_CREATE | db.DB_INIT_TXN | db.DB_INIT_LOG | db.DB_INIT_MPOOL
_ENV_FLAGS |= db.DB_RECOVER


#: The smallest cache: a first boot writes the snapshot in key order, which a
#: few MiB serve as well as many; an idle daemon touches the cache's hash table
#: in proportion to its size (3.8 MiB of RSS for 64 MiB, 0.5 MiB for 8).
MIN_CACHE = 8 << 20


def cache_for(home: str, most: int) -> int:
    """A cache sized to the tree the database holds, between MIN_CACHE and `most`.

    The tree is measured by the B-tree files at open: a restart sizes the
    cache to what the last run stored, a first boot starts at the minimum.
    """
    stored = 0
    for name in ("snapshot", "wmlog"):
        try:
            stored += os.stat(os.path.join(home, name)).st_size
        except FileNotFoundError:
            pass
    return max(min(most, MIN_CACHE), min(most, stored + stored // 4))


class StoreError(Exception):
    """The database cannot be used (newer schema, locked by another process)."""


class Store(SnapshotReads):
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
        cache = cache_for(home, cache_bytes)
        env.set_cachesize(cache >> 30, cache & ((1 << 30) - 1), 1)
        env.set_lg_bsize(256 << 10)
        env.set_lg_max(16 << 20)
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
        self._txn_head = self._txn_oldest = 0  # the open transaction's head and oldest
        self._setup()

    def _open(self, name: str) -> Table:
        handle = db.DB(self._env)
        handle.set_get_returns_none(2)
        handle.open(name, dbtype=db.DB_BTREE, flags=db.DB_CREATE | db.DB_AUTO_COMMIT)
        table: Table = handle
        return table

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
        # both written with the session, in one transaction: present from here on
        self.session: str = cast(bytes, self._meta.get(b"session")).decode("ascii")
        self.head: int = _SERIAL.unpack(cast(bytes, self._meta.get(b"head")))[0]
        cursor = self._log.cursor()
        try:
            first = cursor.first()
        finally:
            cursor.close()
        self.oldest: int = _SERIAL.unpack(first[0])[0] if first else self.head + 1

    # -- writing: one transaction at a time, on the reactor thread ---------------
    def transaction(self, *, sync: bool = True) -> AbstractContextManager[None]:
        """A write transaction for a ``with`` block: the store's reads see its
        writes until it ends; the block's end commits it (durably unless ``sync`` is
        False), an exception aborts it. Transactions do not nest."""
        return self._transaction(sync)

    @contextmanager
    def _transaction(self, sync: bool) -> Iterator[None]:
        self._begin()
        try:
            yield
            self._finish(sync)
        except BaseException:
            self._abort()
            raise

    def commit(self, records: Sequence[Record], ops: Iterable[Op]) -> int:
        """Append ``records`` as head+1.., apply ``ops``, trim the log: one durable txn."""
        with self._transaction(True):
            self.apply(ops)
            self.append(records)
        return self.head

    def load(self, ops: Iterable[Op], chunk: int = 5000, *, sync: bool = True) -> None:
        """Bulk snapshot load (first boot): chunked transactions, one sync at the end.

        ``sync=False`` leaves the sync to a later call (a caller loading piecemeal).
        Until a ``sync=True`` call ends the load, a reopened store is ``created``.
        """
        self._begin()
        try:
            if not self._loading:
                self._meta.put(b"loading", b"1", txn=self._txn)
            for n, op in enumerate(ops, 1):
                self.apply((op,))
                if n % chunk == 0:
                    self._finish(sync=False)
                    self._begin()
            if sync:
                self._meta.delete(b"loading", txn=self._txn)
            self._finish(sync=False)
        except BaseException:
            self._abort()
            raise
        self._loading = not sync
        if sync:
            self._env.log_flush()
            self._env.txn_checkpoint(0, 0)

    def append(self, records: Iterable[Record]) -> None:
        """Log ``records`` after the head, in the open transaction; trim to ``loglen``."""
        txn = self._open_txn()
        for record in records:
            self._txn_head += 1
            self._log.put(_SERIAL.pack(self._txn_head), record.encode(), txn=txn)
        while self._txn_head - self._txn_oldest + 1 > self.loglen:
            self._log.delete(_SERIAL.pack(self._txn_oldest), txn=txn)
            self._txn_oldest += 1

    def apply(self, ops: Iterable[Op]) -> None:
        """Change the snapshot by ``ops``, in order, in the open transaction."""
        snap, txn = self._snap, self._open_txn()
        for op in ops:
            match op:
                case Put(path, entry):
                    snap.put(path_key(path), entry.pack(), txn=txn)
                case Drop(path):
                    try:
                        snap.delete(path_key(path), txn=txn)
                    except db.DBNotFoundError:
                        pass
                case DropTree(path):
                    self._deltree(path_key(path))
                case MoveTree(src, dst):
                    self._move(src, dst)
                case _:
                    raise TypeError(f"not a snapshot op: {op!r}")

    def _subtree(self, key: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return self._range(key, True, key, limit)

    def _deltree(self, key: bytes) -> None:
        while rows := self._subtree(key, CHUNK):
            for k, _ in rows:
                self._snap.delete(k, txn=self._txn)
            if len(rows) < CHUNK:
                return

    def _move(self, src: bytes, dst: bytes) -> None:
        skey, dkey = path_key(src), path_key(dst)
        if skey == dkey:
            return
        if dkey.startswith(skey + b"\0"):
            raise ValueError(f"cannot move {src!r} into itself")
        self._deltree(dkey)
        while rows := self._subtree(skey, CHUNK):
            for k, v in rows:
                self._snap.delete(k, txn=self._txn)
                self._snap.put(dkey + k[len(skey) :], v, txn=self._txn)
            if len(rows) < CHUNK:
                return

    def _begin(self) -> None:
        if self._txn is not None:
            raise RuntimeError("a store transaction is already open")
        self._txn = self._env.txn_begin()
        self._txn_head, self._txn_oldest = self.head, self.oldest

    def _open_txn(self) -> Txn:
        if self._txn is None:
            raise RuntimeError("snapshot and log writes need an open store transaction")
        return self._txn

    def _abort(self) -> None:
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()

    def _finish(self, sync: bool) -> None:
        """Commit the open transaction and publish its head and oldest serial."""
        head = self._txn_head
        if head != self.head:
            self._meta.put(b"head", _SERIAL.pack(head), txn=self._txn)
        txn, self._txn = self._open_txn(), None  # a commit that fails has ended it too
        txn.commit(0 if sync else db.DB_TXN_NOSYNC)
        self.head = head
        self.oldest = self._txn_oldest if self._txn_oldest <= head else head + 1
        self._commits += 1
        if self._commits % 256 == 0:  # lets DB_LOG_AUTO_REMOVE drop old log files
            self._env.txn_checkpoint(1024, 1)

    def log_after(self, serial: int, limit: int = CHUNK) -> list[tuple[int, bytes]]:
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
