"""The snapshot's key order, and reading it chunk by chunk in that order.

The snapshot table is keyed by the path with ``/`` replaced by NUL: since
NUL sorts before every other byte, key order is a depth-first walk with
children sorted by name, and a sub-tree is the one key range that starts
with ``key + NUL``. INIT streams, walks and sub-tree moves all rest on that,
so the key scheme and the range reads that use it live here, apart from the
environment, the transactions and the log (``store.py``, the one module
that imports Berkeley DB). Every read fetches one chunk and closes its
cursor, so nothing holds a page lock across reactor turns.

The handle types are ``Protocol``s over what we call of the BDB binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from mirrord.values import Entry

__all__ = ["CHUNK", "Cursor", "SnapshotReads", "Table", "Txn", "path_key"]

CHUNK = 1000  # rows per read: one cursor, opened and closed within one call


def path_key(path: bytes) -> bytes:
    """The snapshot key of an absolute path (``/`` itself is the empty key)."""
    return b"" if path == b"/" else path.replace(b"/", b"\0")


class Txn(Protocol):
    """A Berkeley DB transaction handle, as we use it."""

    def commit(self, flags: int = 0) -> None: ...

    def abort(self) -> None: ...


class Cursor(Protocol):
    def set_range(self, key: bytes) -> tuple[bytes, bytes] | None: ...

    def first(self) -> tuple[bytes, bytes] | None: ...

    def next(self) -> tuple[bytes, bytes] | None: ...

    def close(self) -> None: ...


class Table(Protocol):
    """One B-tree (opened with ``set_get_returns_none(2)``: a missing key is None)."""

    def get(self, key: bytes, txn: Txn | None = None) -> bytes | None: ...

    def put(self, key: bytes, data: bytes, txn: Txn | None = None) -> None: ...

    def delete(self, key: bytes, txn: Txn | None = None) -> None: ...

    def cursor(self, txn: Txn | None = None) -> Cursor: ...

    def close(self) -> None: ...


class SnapshotReads:
    """Reads of the snapshot: inside a transaction they see its writes, else what is
    committed (``_txn`` None)."""

    _snap: Table
    _txn: Txn | None = None

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
        limit: int = CHUNK,
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

    def walk(self, root: bytes | None = None, chunk: int = CHUNK) -> Iterator[tuple[bytes, Entry]]:
        """Every entry under ``root`` in key order, read chunk by chunk."""
        after = None
        while True:
            rows = self.iter_tree(root, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def children_chunk(
        self, dir_path: bytes, after: bytes | None = None, limit: int = CHUNK
    ) -> list[tuple[bytes, Entry]]:
        """Up to ``limit`` direct children of ``dir_path`` whose name sorts after ``after``."""
        dkey = path_key(dir_path)
        prefix = dkey + b"\0"
        start, inclusive = (prefix, True) if after is None else (prefix + after, False)
        rows = self._range(start, inclusive, dkey, limit, skip_children=True)
        base = b"" if dir_path == b"/" else dir_path
        return [(base + b"/" + k[len(prefix) :], Entry.unpack(v)) for k, v in rows]

    def children(self, dir_path: bytes, chunk: int = CHUNK) -> Iterator[tuple[bytes, Entry]]:
        """Direct children of ``dir_path`` as (path, entry), chunk by chunk."""
        after = None
        while True:
            rows = self.children_chunk(dir_path, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0].rpartition(b"/")[2]
