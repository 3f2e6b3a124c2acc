"""Report mode's baseline: the worker's tree as last known, in Berkeley DB.

The tripwire must not call the whole tree a change at its first full sync,
nor again when mirrord loses its database and a new session begins: it
keeps the tree it knows here, follows every later record into it, and
compares a later full sync with it.  Millions of entries do not fit in
memory, so the tree is a B-tree keyed by path (``/`` stored as NUL, so key
order is a depth-first walk with children sorted by name, as mirrord's
snapshot, and a sub-tree is one key range).

Two tables, ``a`` and ``b``; ``meta:current`` names the one that is the
baseline.  A full sync is written into the other one and becomes the
baseline by one committed write of ``current``, so a crash mid-sync leaves
the old baseline whole and never half a new one.  This is fs_mirror's only
importer of Berkeley DB; every call runs on the reactor thread in one
short transaction, committed without a sync, and ``flush`` (called before
fs_mirror saves its serial) makes the commits durable.  No locking
subsystem: one thread of one process (``DATADIR/.fs_mirror.lock``) uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

try:  # pragma: no cover - whichever binding is installed
    from berkeleydb import db  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError:  # pragma: no cover
    from bsddb3 import db  # type: ignore[import-not-found,import-untyped,no-redef,unused-ignore]

from protocol.paths import quote, unquote
from protocol.records import Action, Meta, Record

_FLAGS = db.DB_CREATE | db.DB_INIT_TXN | db.DB_INIT_LOG | db.DB_INIT_MPOOL | db.DB_RECOVER
_KINDS = (Action.CREATE, Action.FWRITE, Action.SYMLINK)  # what a full sync names
_DIGEST = b"sha256="


@dataclass(frozen=True, slots=True)
class Entry:
    """What the baseline knows of one path: its kind (the full sync's action) and fields."""

    action: Action  # CREATE (directory), FWRITE (file) or SYMLINK
    target: bytes | None = None  # a symlink's target
    meta: Meta = Meta()
    digest: str | None = None  # sha256 of the content, when report.hash is on

    def encode(self) -> bytes:
        parts = [self.action.value.encode("ascii"), quote(self.target or b"")]
        parts += self.meta.fields()
        if self.digest is not None:
            parts.append(_DIGEST + self.digest.encode("ascii"))
        return b"\t".join(parts)

    @classmethod
    def decode(cls, value: bytes) -> Entry:
        action, target, *fields = value.split(b"\t")
        digest = next((f[len(_DIGEST) :] for f in fields if f.startswith(_DIGEST)), None)
        return cls(
            Action(action.decode("ascii")),
            unquote(target) or None,
            Meta.from_fields(fields),
            digest.decode("ascii") if digest is not None else None,
        )

    def record(self, path: bytes) -> Record:
        """The full-sync record that names this entry at ``path``."""
        return Record(self.action, path, self.target, self.meta)

    def same_as(self, other: Entry) -> bool:
        """Equal for a tripwire.

        A directory's mtime is left out (its children move it), and so is a
        content hash that one side lacks (report.hash was off for it).
        """
        if self.action is Action.CREATE and other.action is Action.CREATE:
            return replace(self.meta, mtime_ns=None) == replace(other.meta, mtime_ns=None)
        if self.digest is None or other.digest is None:  # hashing was off for one of them
            return replace(self, digest=None) == replace(other, digest=None)
        return self == other


def entry_of(record: Record, digest: str | None = None) -> Entry | None:
    """The entry a CREATE, FWRITE or SYMLINK makes; None for the other actions."""
    if record.action not in _KINDS:
        return None
    return Entry(record.action, record.target, record.meta, digest)


def path_key(path: bytes) -> bytes:
    return path.replace(b"/", b"\0")


def key_path(key: bytes) -> bytes:
    return key.replace(b"\0", b"/")


def _ancestors(key: bytes) -> Iterator[bytes]:
    """The keys of the directories above ``key``, nearest first."""
    while True:
        key = key.rpartition(b"\0")[0]
        if not key:
            return
        yield key


class BaselineError(Exception):
    """The baseline's database cannot be opened; the message says where and why."""


class Baseline:
    """The baseline tables in the Berkeley DB environment ``home``."""

    def __init__(self, home: bytes) -> None:
        env = db.DBEnv()
        env.set_cachesize(0, 32 << 20, 1)
        env.set_lg_max(16 << 20)
        try:
            os.makedirs(home, mode=0o700, exist_ok=True)
            env.open(os.fsdecode(home), _FLAGS)
        except (OSError, db.DBError) as e:
            raise BaselineError(
                f"cannot open report mode's baseline in {os.fsdecode(home)}: {e};"
                " remove that directory (and DATADIR/sn) to record a new baseline"
            ) from None
        env.log_set_config(db.DB_LOG_AUTO_REMOVE, 1)
        self._env = env
        self._meta = self._open("meta")
        self._tables = {b"a": self._open("a"), b"b": self._open("b")}

    def _open(self, name: str) -> Any:
        handle = db.DB(self._env)
        handle.set_get_returns_none(2)
        handle.open(name, dbtype=db.DB_BTREE, flags=db.DB_CREATE | db.DB_AUTO_COMMIT)
        return handle

    # -- which table is which --------------------------------------------------
    @property
    def exists(self) -> bool:
        """True once a full sync has been recorded whole."""
        return self._meta.get(b"current") is not None

    def _names(self) -> tuple[bytes, bytes]:
        current = self._meta.get(b"current") or b"a"
        return current, b"b" if current == b"a" else b"a"

    @property
    def _current(self) -> Any:
        return self._tables[self._names()[0]]

    @property
    def _spare(self) -> Any:
        return self._tables[self._names()[1]]

    def get(self, path: bytes) -> Entry | None:
        value = self._current.get(path_key(path))
        return None if value is None else Entry.decode(value)

    def flush(self) -> None:
        """Make every commit so far durable (before fs_mirror saves the serial it relies on)."""
        self._env.log_flush()

    def _txn(self) -> Any:
        return self._env.txn_begin()

    # -- following the records of NEXT batches -----------------------------------
    def follow(self, records: Sequence[Record], digests: Sequence[str | None] = ()) -> None:
        """Apply ``records`` to the baseline in one transaction (replaying them is harmless)."""
        table, txn = self._current, self._txn()
        try:
            for i, record in enumerate(records):
                digest = digests[i] if i < len(digests) else None
                self._follow(table, txn, record, digest)
        except BaseException:
            txn.abort()
            raise
        txn.commit(db.DB_TXN_NOSYNC)

    def _follow(self, table: Any, txn: Any, record: Record, digest: str | None) -> None:
        key = path_key(record.path)
        match record.action:
            case Action.CREATE | Action.FWRITE | Action.SYMLINK:
                entry = entry_of(record, digest)
                assert entry is not None
                table.put(key, entry.encode(), txn=txn)
            case Action.ATTRIB:
                value = table.get(key, txn=txn)
                if value is not None:
                    old = Entry.decode(value)
                    table.put(
                        key, replace(old, meta=_merged(old.meta, record.meta)).encode(), txn=txn
                    )
            case Action.DELETE:
                _drop_tree(table, txn, key)
            case Action.MOVE:
                assert record.target is not None
                self._move(table, txn, key, path_key(record.target), record.meta)

    def _move(self, table: Any, txn: Any, src: bytes, dst: bytes, meta: Meta) -> None:
        moved = table.get(src, txn=txn)
        if src == dst or (dst + b"\0").startswith(src + b"\0"):
            return  # into itself: the kernel refuses it, nothing moved
        _drop_tree(table, txn, dst)
        if moved is None:  # the source is unknown here: what the record says is all we know
            guess = _guess(meta)
            if guess is not None:
                table.put(dst, guess.encode(), txn=txn)
            return
        old = Entry.decode(moved)
        table.put(dst, replace(old, meta=_merged(old.meta, meta)).encode(), txn=txn)
        table.delete(src, txn=txn)
        _walk_below(
            table, txn, src, lambda key, value: table.put(dst + key[len(src) :], value, txn=txn)
        )

    # -- a full sync: written into the spare table, compared with the baseline -----
    def begin_full(self) -> None:
        """Empty the spare table for a full sync (what a cut-short one left there goes too)."""
        txn = self._txn()
        self._spare.truncate(txn=txn)
        txn.commit(db.DB_TXN_NOSYNC)

    def add_full(
        self, records: Sequence[Record], digests: Sequence[str | None] = ()
    ) -> list[tuple[Record, Entry | None, Entry]]:
        """Record one chunk of a full sync; returns what differs from the baseline.

        Each difference is ``(record, old entry or None, new entry)``; nothing
        differs while there is no baseline yet (the first full sync is it).
        """
        spare, current, known = self._spare, self._current, self.exists
        changed: list[tuple[Record, Entry | None, Entry]] = []
        txn = self._txn()
        try:
            for i, record in enumerate(records):
                entry = entry_of(record, digests[i] if i < len(digests) else None)
                if entry is None:
                    continue
                key = path_key(record.path)
                spare.put(key, entry.encode(), txn=txn)
                if known:
                    value = current.get(key, txn=txn)
                    old = None if value is None else Entry.decode(value)
                    if old is None or not old.same_as(entry):
                        changed.append((record, old, entry))
        except BaseException:
            txn.abort()
            raise
        txn.commit(db.DB_TXN_NOSYNC)
        return changed

    def unseen(
        self, after: bytes | None, limit: int = 4096
    ) -> tuple[list[tuple[bytes, Entry]], bytes | None]:
        """Baseline entries the full sync did not name, ``limit`` keys at a time.

        Returns ``(gone, resume)``: pass ``resume`` back as ``after`` until it
        is None.  An entry below a directory the full sync sent as unreadable
        is copied into the new table instead (mirrord sends nothing below it).
        """
        current, spare = self._current, self._spare
        gone: list[tuple[bytes, Entry]] = []
        txn = self._txn()
        cursor = current.cursor(txn=txn)
        resume: bytes | None = None
        try:
            item = cursor.set_range(after) if after is not None else cursor.first()
            if item is not None and after is not None and item[0] == after:
                item = cursor.next()
            looked = 0
            while item is not None and looked < limit:
                key, value = item
                resume, looked = key, looked + 1
                if spare.get(key, txn=txn) is None:
                    if _below_unreadable(spare, txn, key):
                        spare.put(key, value, txn=txn)
                    else:
                        gone.append((key_path(key), Entry.decode(value)))
                item = cursor.next()
            if item is None:
                resume = None  # the whole baseline was looked at
        finally:
            cursor.close()
        txn.commit(db.DB_TXN_NOSYNC)
        return gone, resume

    def swap(self) -> None:
        """The full sync's table becomes the baseline (one committed write); empty the old."""
        current, spare = self._names()
        txn = self._txn()
        self._meta.put(b"current", spare, txn=txn)
        txn.commit()
        txn = self._txn()
        self._tables[current].truncate(txn=txn)
        txn.commit(db.DB_TXN_NOSYNC)
        self._env.txn_checkpoint()

    def close(self) -> None:
        for table in (*self._tables.values(), self._meta):
            table.close()
        self._env.close()


def _merged(old: Meta, new: Meta) -> Meta:
    """``old`` with every field ``new`` carries replaced."""
    fields = {
        name: getattr(new, name)
        for name in ("mode", "uid", "gid", "size", "mtime_ns")
        if getattr(new, name) is not None
    }
    return replace(old, **fields)


def _guess(meta: Meta) -> Entry | None:
    """The entry a MOVE of an unknown source leaves: a file with a size, else a directory."""
    if meta.size is not None:
        return Entry(Action.FWRITE, meta=meta)
    if meta.mode is not None:
        return Entry(Action.CREATE, meta=meta)
    return None  # a symlink's MOVE carries nothing: its target is unknown here


def _walk_below(
    table: Any, txn: Any, key: bytes, each: Callable[[bytes, bytes], None] | None = None
) -> None:
    """Delete every entry below ``key`` with one cursor, handing each to ``each`` first.

    Streams: a moved or deleted tree of millions is never a list in memory.
    ``each`` may write keys outside the range (a MOVE's destination).
    """
    prefix = key + b"\0"
    cursor = table.cursor(txn=txn)
    try:
        item = cursor.set_range(prefix)
        while item is not None and item[0].startswith(prefix):
            if each is not None:
                each(*item)
            cursor.delete()
            item = cursor.next()
    finally:
        cursor.close()


def _drop_tree(table: Any, txn: Any, key: bytes) -> None:
    if table.get(key, txn=txn) is not None:
        table.delete(key, txn=txn)
    _walk_below(table, txn, key)


def _below_unreadable(spare: Any, txn: Any, key: bytes) -> bool:
    for above in _ancestors(key):
        value = spare.get(above, txn=txn)
        if value is not None:
            return Entry.decode(value).meta.unreadable
    return False
