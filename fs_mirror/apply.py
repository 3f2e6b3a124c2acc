"""Replaying records into the mirror: the safety boundary of the backup host.

Whatever a server sends, every path goes through ``Applier.confine`` before
anything touches the disk: only absolute paths of plain components, never
our own state files, never through a symlink that already exists in the
mirror (each existing parent is ``lstat``-ed; the server can make symlinks,
so it could otherwise aim later writes anywhere).  Such a path means a broken
or hostile server: it is logged and the batch abandoned (the client drops the
connection, nothing of the batch counts).  Worker paths that merely collide
with our own state files are logged and skipped.

Records are replayed in order and are idempotent, so a batch interrupted by
a crash or a dropped connection is simply replayed from the saved serial.
File contents are not fetched inline: FWRITE paths are collected per batch
(following later MOVEs and dropped by later DELETEs) and handed to the
fs_sync fetcher once, at the end, which writes a temporary file and renames
it over the old one, so a hard link to the old file (a rotated backup) keeps
its content.  Metadata-only changes to a file shared with a rotated backup
are made on a copy for the same reason.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from fs_mirror.nodes import Stats, remove_node, show
from fs_mirror.nodes import lstat as _lstat
from fs_mirror.nodes import merge as _merge
from fs_mirror.owed import Owed
from fs_mirror.rotate import unshare
from fs_mirror.state import RESERVED, STAGING_NAME
from fs_sync.interface import Fetcher, FetchItem, Outcome, Result, is_local_disk_error
from protocol.paths import is_under
from protocol.records import Action, Meta, Record

_NO_META = Meta()
DIRS_KEPT = 4096  # bounded: directories known real, within one batch
#: Records that can turn a directory into a symlink or remove it: after one,
#: nothing ``confine`` learnt earlier in the batch is trusted any more.
_RESHAPING = (Action.DELETE, Action.MOVE, Action.SYMLINK)


class HostilePath(ValueError):
    """A path no honest server sends (it would leave the mirror): refused and skipped."""


class ReservedPath(ValueError):
    """A worker path that collides with fs_mirror's own files: skipped, batch goes on."""


#: Up to this many files a batch are fsynced one by one; past it one syncfs(2)
#: of the mirror's file system is cheaper (100k 1 KiB files: 75 s -> see bench/).
FSYNC_EACH_MAX = 8

_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def make_durable(paths: list[bytes], datadir: bytes) -> None:
    """Flush fetched files to disk before the batch's serial is saved.

    The fetchers are built with fsync=False: a small batch is fsynced file by
    file, a large one (an INIT chunk) with one syncfs.  Until the serial is
    saved a crash only means the batch is replayed, so this is the one point
    where the data must be on disk.
    """
    if len(paths) <= FSYNC_EACH_MAX:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # replaced or removed since: a later record will say
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class Applier:
    """Applies record batches under ``datadir`` (the worker's ``/`` maps to it)."""

    def __init__(
        self,
        datadir: bytes | str,
        fetcher: Fetcher,
        *,
        as_root: bool,
        log: Logger | None = None,
        verbose: bool = False,
        tmpdir: bytes | None = None,
        owed: Owed | None = None,
    ) -> None:
        self.datadir = os.fsencode(datadir).rstrip(b"/")
        if not self.datadir:
            raise ValueError("the mirror cannot be the root directory")
        # Temporary symlinks are made here, outside the mirrored tree, so a
        # kill -9 leaves none behind in it (the service empties it at start).
        self.tmpdir = tmpdir or os.path.join(self.datadir, STAGING_NAME, b"tmp")
        self.fetcher = fetcher
        self.as_root = as_root
        self.log = log or Logger()
        self.verbose = verbose
        self.stats = Stats()
        self._prefix = show(self.datadir)
        self._pending: dict[bytes, Meta] = {}  # worker path -> metadata to set after fetch
        # Pending fetches that only guess the worker has a file there: the
        # target of a MOVE whose source the mirror lacks (see ``_move``).
        self._guessed: set[bytes] = set()
        # Files fetched too late or refused: a later MOVE turns them into a
        # fetch of the new name (see fs_mirror.owed).
        self.owed = owed if owed is not None else Owed()
        self._parents: set[bytes] = set()
        # Local directories lstat-ed (or made) in this batch and found real,
        # so each record need not lstat every parent again.  Only CREATE,
        # FWRITE and ATTRIB records run while it is filled, and none of them
        # makes a symlink or removes a directory; it is emptied after every
        # _RESHAPING record, before the fetch and at each batch's end.
        self._dirs: set[bytes] = set()

    # -- confinement -------------------------------------------------------
    def confine(self, path: bytes) -> bytes:
        """The local path for worker ``path``, or HostilePath when it is unsafe."""
        if not isinstance(path, bytes) or not path.startswith(b"/"):
            raise HostilePath("not an absolute path")
        if b"\0" in path:
            raise HostilePath("NUL byte in path")
        parts = path[1:].split(b"/")
        if parts == [b""]:
            raise HostilePath("the mirror root itself")
        for part in parts:
            if part in (b"", b".", b".."):
                raise HostilePath(f"component {part.decode()!r} in path")
        if parts[0] in RESERVED:
            raise ReservedPath("collides with fs_mirror's own state files")
        current = self.datadir
        for part in parts[:-1]:
            current += b"/" + part
            if current in self._dirs:
                continue
            st = _lstat(current)
            if st is None:
                break
            if stat.S_ISLNK(st.st_mode):
                raise HostilePath(f"parent {show(current)!r} is a symlink in the mirror")
            if not stat.S_ISDIR(st.st_mode):
                break  # a file in the way: the record replaces it, nothing to traverse
            self._known_dir(current)
        return self.datadir + path

    def _known_dir(self, local: bytes) -> None:
        if len(self._dirs) >= DIRS_KEPT:
            self._dirs.clear()
        self._dirs.add(local)

    def _make_parents(self, local: bytes) -> None:
        """Create missing parents of ``local``; a file in the way becomes a directory."""
        parent = os.path.dirname(local)
        if parent in self._dirs:
            return
        st = _lstat(parent)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return  # confine() saw no symlink above, so the whole chain is real
        current = self.datadir
        for part in parent[len(self.datadir) + 1 :].split(b"/"):
            current += b"/" + part
            st = _lstat(current)
            if st is not None and stat.S_ISDIR(st.st_mode):
                continue
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise HostilePath(f"parent {show(current)!r} is a symlink in the mirror")
            if st is not None:
                os.unlink(current)  # the worker has a directory here now
                self._pending.pop(current[len(self.datadir) :], None)
            os.mkdir(current, 0o755)
            self._known_dir(current)

    # -- pending fetches ---------------------------------------------------
    # ``_parents`` holds every ancestor of a path added this batch (a superset
    # of the live ones), so the O(pending) scans below run only for paths that
    # may have pending children: an FWRITE-only INIT chunk stays linear.
    def _add(self, path: bytes, meta: Meta, *, guessed: bool = False) -> None:
        self._pending[path] = meta
        if guessed:
            self._guessed.add(path)
        else:
            self._guessed.discard(path)
        parent = path.rpartition(b"/")[0]
        while parent and parent not in self._parents:
            self._parents.add(parent)
            parent = parent.rpartition(b"/")[0]

    def _under(self, path: bytes) -> list[bytes]:
        if path not in self._parents:
            return []
        return [k for k in self._pending if k != path and is_under(k, path)]

    def _drop(self, path: bytes) -> None:
        """Forget pending fetches of ``path`` and everything under it."""
        self._pending.pop(path, None)
        self._guessed.discard(path)
        for key in self._under(path):
            del self._pending[key]
            self._guessed.discard(key)

    def _move_pending(self, src: bytes, dst: bytes) -> bool:
        """Re-key pending fetches at or under ``src`` to ``dst``; True if ``src`` was one."""
        keys = ([src] if src in self._pending else []) + self._under(src)
        moved = [(key, self._pending.pop(key), key in self._guessed) for key in keys]
        self._drop(dst)
        for key, meta, guessed in moved:
            self._guessed.discard(key)
            self._add(dst + key[len(src) :], meta, guessed=guessed)
        return src in keys

    # -- records -----------------------------------------------------------
    #: Records change the tree under the datadir (report mode's sink does not).
    mirrors = True

    def apply_batch(
        self,
        records: Iterable[Record],
        serial: int | None = None,
        *,
        init: bool = False,
        replayed: int = 0,
        local_done: Callable[[], None] | None = None,
    ) -> Deferred[Stats]:
        """Apply ``records`` in order, then fetch the batch's files once.

        ``serial`` and ``init`` say where the records come from.  The first
        ``replayed`` records were already applied to the disk by a run that
        was killed before it could save their serial: for them only what
        they owe is worked out again (their fetches), since repeating a MOVE
        whose source earlier records made anew would replace the moved tree.
        ``local_done`` runs once the disk changes are made, before the fetch.

        A record that cannot be applied (a refused path, a name too long for
        this file system, ...) is logged in one line, counted and skipped:
        the rest of the batch still applies.  Fires with the running Stats;
        fails only when the local disk cannot take writes (``LocalDiskError``
        or another OSError with ENOSPC, EROFS, ...) or the fetcher cannot
        serve at all (``BackendUnavailable``), and then the batch must not
        count as applied: replaying it is safe, records are idempotent.
        """
        self._dirs.clear()
        try:
            for index, record in enumerate(records):
                self.stats.records += 1
                try:
                    if index < replayed:
                        self._book(record)
                    else:
                        self._apply(record)
                except (HostilePath, ReservedPath) as e:
                    self._refused(record.action.value, record.path, e)
                except OSError as e:
                    if is_local_disk_error(e):
                        raise
                    self._skipped(record, e)
                finally:
                    if record.action in _RESHAPING:
                        self._dirs.clear()
            if local_done is not None:
                local_done()
            return self._fetch_pending()
        except Exception:
            self._pending.clear()
            self._guessed.clear()
            self._parents.clear()
            return fail()  # the local disk refused: the batch did not happen
        finally:
            self._dirs.clear()

    def _refused(self, action: str, path: bytes, e: Exception) -> None:
        self.stats.refused += 1
        self.log.warn(
            "refused {action} {path}: {reason}; skipped",
            action=action, path=show(path), reason=str(e),
        )  # fmt: skip

    def _skipped(self, record: Record, e: OSError) -> None:
        """One record the local file system will not take (ENAMETOOLONG, ...): skip it."""
        self.stats.skipped += 1
        if record.action is Action.FWRITE:
            self.owed.add(record.path, record.meta)
        self.log.warn(
            "cannot apply {action} {path}: {reason}; skipped",
            action=record.action.value, path=show(record.path), reason=e.strerror or str(e),
        )  # fmt: skip

    def _echo(self, text: str) -> None:
        if self.verbose:
            self.log.info("{line}", line=f"{text}, PREFIX '{self._prefix}'")

    def _apply(self, record: Record) -> None:
        action, path = record.action, record.path
        if action is Action.CREATE and path == b"/":
            return  # the mirror root always exists
        local = self.confine(path)
        owed = self.owed
        if action is Action.FWRITE:
            owed.settle_tree(path)
            self._drop(path)
            self._add(path, record.meta)
        elif action is Action.CREATE:
            owed.settle(path)
            self._create(path, local, record.meta)
        elif action is Action.DELETE:
            owed.settle_tree(path)
            self._drop(path)
            kind = remove_node(local)
            self._echo(f"DELETE {kind or 'FILE'} '{show(path)}'")
        elif action is Action.MOVE:
            assert record.target is not None
            self._move(path, local, record.target, record.meta)
        elif action is Action.SYMLINK:
            assert record.target is not None
            owed.settle_tree(path)
            self._symlink(path, local, record.target, record.meta)
        elif action is Action.ATTRIB:
            if path in owed:  # still owed: the fetch to come sets these too
                owed.add(path, _merge(owed.meta(path), record.meta))
            self._attrib(path, local, record.meta)

    def _book(self, record: Record) -> None:
        """What ``record`` owes, without touching the disk (its change is already made)."""
        action, path, owed = record.action, record.path, self.owed
        if action is Action.FWRITE:
            owed.settle_tree(path)
            self._drop(path)
            self._add(path, record.meta)
        elif action is Action.CREATE:
            owed.settle(path)
            self._pending.pop(path, None)
            self._guessed.discard(path)
        elif action in (Action.DELETE, Action.SYMLINK):
            owed.settle_tree(path)
            self._drop(path)
        elif action is Action.MOVE:
            assert record.target is not None
            meta, src_pending, src_owed = self._follow_move(path, record.target, record.meta)
            if not src_pending:  # fetched again: cheap, and right whatever the first run did
                self._add(record.target, meta, guessed=not src_owed)
        elif action is Action.ATTRIB:
            if path in self._pending:
                self._pending[path] = _merge(self._pending[path], record.meta)
            if path in owed:
                owed.add(path, _merge(owed.meta(path), record.meta))

    def _create(self, path: bytes, local: bytes, meta: Meta) -> None:
        self._pending.pop(path, None)
        self._make_parents(local)
        st = _lstat(local)
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                os.unlink(local)  # a file or symlink where the worker has a directory
            os.mkdir(local, 0o755 if meta.mode is None else meta.mode & 0o777)
        self._set_meta(local, meta)
        self._echo(f"CREATE DIR '{show(path)}'")

    def _move(self, src: bytes, src_local: bytes, dst: bytes, meta: Meta) -> None:
        """Rename locally; what the mirror owes under ``src`` becomes fetches under ``dst``.

        A source the mirror lacks becomes a fetch of ``dst`` (contract 2,
        MOVE), marked as a guess: when ``dst`` is already a directory here
        this is the replay of a move already made, and when the worker's
        ``dst`` turns out to be a directory the mirror never had, only a
        full resync can bring what is below it (see ``_fetched``).
        """
        dst_local = self.confine(dst)
        if dst == src:
            return
        if is_under(dst, src):  # dst == src returned above
            raise HostilePath("MOVE of a directory into itself")
        meta, src_pending, src_owed = self._follow_move(src, dst, meta)
        src_st = _lstat(src_local)
        self._echo(f"MOVE '{show(src)}' -> '{show(dst)}'")
        if src_owed and not src_pending:
            self._add(dst, meta)  # what the mirror has under src is not what moved
        if src_st is None:
            if not src_pending and not src_owed:
                self._add(dst, meta, guessed=True)  # nothing to move here: fetch the result
            return
        self._make_parents(dst_local)
        dst_st = _lstat(dst_local)
        if dst_st is not None and (stat.S_ISDIR(dst_st.st_mode) or stat.S_ISDIR(src_st.st_mode)):
            remove_node(dst_local)  # rename() only replaces an empty dir, or file by file
        os.rename(src_local, dst_local)
        if meta != _NO_META:
            self._set_meta(dst_local, meta)

    def _follow_move(self, src: bytes, dst: bytes, meta: Meta) -> tuple[Meta, bool, bool]:
        """Move what is pending and owed at or below ``src`` to ``dst`` (no disk change).

        Returns the metadata for ``dst``, whether ``src`` itself was pending
        (its fetch now goes to ``dst``) and whether it was owed.
        """
        self.owed.settle_tree(dst)
        owed = dict(self.owed.take_tree(src))
        src_owed = src in owed
        meta = _merge(owed.pop(src, _NO_META), meta)
        src_pending = self._move_pending(src, dst)
        for key, owed_meta in owed.items():  # fetched too late under the old name
            self._add(dst + key[len(src) :], owed_meta)
        return meta, src_pending, src_owed

    def _symlink(self, path: bytes, local: bytes, target: bytes, meta: Meta) -> None:
        self._drop(path)
        self._make_parents(local)
        suffix = os.urandom(8).hex().encode()  # a clash would raise, never clobber
        os.makedirs(self.tmpdir, mode=0o700, exist_ok=True)
        tmp = os.path.join(self.tmpdir, b"link-" + suffix)
        os.symlink(target, tmp)
        try:
            st = _lstat(local)
            if st is not None and stat.S_ISDIR(st.st_mode):
                shutil.rmtree(local)
            os.rename(tmp, local)
        except BaseException:
            remove_node(tmp)
            raise
        self._set_meta(local, meta)
        self._echo(f"SYMLINK '{show(path)}' -> '{show(target)}'")

    def _attrib(self, path: bytes, local: bytes, meta: Meta) -> None:
        if path in self._pending:
            self._pending[path] = _merge(self._pending[path], meta)
            return
        st = _lstat(local)
        if st is None:
            self.log.debug("ATTRIB of absent {path}: skipped", path=show(path))
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and self._differs(st, meta):
            unshare(local, self.as_root)  # keep the rotated backup's metadata
            st = os.lstat(local)
        self._set_meta(local, meta, st)
        self._echo(f"ATTRIB '{show(path)}'")

    # -- metadata ------------------------------------------------------------
    def _differs(self, st: os.stat_result, meta: Meta) -> bool:
        return (
            (meta.mode is not None and stat.S_IMODE(st.st_mode) != meta.mode)
            or (meta.mtime_ns is not None and st.st_mtime_ns != meta.mtime_ns)
            or (self.as_root and meta.uid is not None and st.st_uid != meta.uid)
            or (self.as_root and meta.gid is not None and st.st_gid != meta.gid)
        )

    def _set_meta(self, local: bytes, meta: Meta, st: os.stat_result | None = None) -> None:
        """Set owner (as root), mode and mtime; never through a symlink."""
        if meta == _NO_META:
            return
        st = st or os.lstat(local)
        link = stat.S_ISLNK(st.st_mode)
        owner = (st.st_uid, st.st_gid)
        if self.as_root and (meta.uid not in (None, owner[0]) or meta.gid not in (None, owner[1])):
            uid = -1 if meta.uid is None else meta.uid
            gid = -1 if meta.gid is None else meta.gid
            os.chown(local, uid, gid, follow_symlinks=False)
            st = os.lstat(local)  # chown may clear set-id bits
        if meta.mode is not None and not link and stat.S_IMODE(st.st_mode) != meta.mode:
            os.chmod(local, meta.mode)
        if meta.mtime_ns is not None and st.st_mtime_ns != meta.mtime_ns:
            os.utime(local, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)

    # -- the end-of-batch fetch ----------------------------------------------
    def _fetch_pending(self) -> Deferred[Stats]:
        pending, self._pending = self._pending, {}
        guessed, self._guessed = self._guessed, set()
        self._parents.clear()
        items, metas, guesses = [], [], set()
        for path, meta in pending.items():
            try:
                local = self.confine(path)
                self._make_parents(local)
            except (HostilePath, ReservedPath) as e:
                self._refused("FWRITE", path, e)
                continue
            except OSError as e:
                if is_local_disk_error(e):
                    raise
                self._skipped(Record(Action.FWRITE, path, meta=meta), e)
                continue
            st = _lstat(local)
            if st is not None and stat.S_ISDIR(st.st_mode):
                if path in guessed:
                    continue  # the replay of a directory move this mirror already made
                shutil.rmtree(local)  # the worker's directory became a file
                self._dirs.clear()
            item = FetchItem(remote=path, local=local)
            items.append(item)
            metas.append(meta)
            if path in guessed:
                guesses.add(item)
        if not items:
            return succeed(self.stats)
        d = self.fetcher.fetch(items)
        d.addCallback(self._fetched, dict(zip(items, metas, strict=True)), guesses)
        return d

    def _fetched(
        self, results: list[Result], metas: dict[FetchItem, Meta], guesses: set[FetchItem]
    ) -> Stats:
        for item, outcome, reason in results:
            path = show(item.remote)
            meta = metas.get(item, _NO_META)
            if outcome is Outcome.DONE:
                st = os.lstat(item.local)
                if self._changed_since(st, meta):
                    # What came is a later state of the path (or another file
                    # under the same name): a later record settles it, and a
                    # MOVE of it first must fetch the moved file anew.
                    self.owed.add(item.remote, meta)
                self._set_meta(item.local, meta, st)
                self.stats.files += 1
                self.stats.bytes += st.st_size
                self._echo(f"WRITE FILE '{path}'")
                continue
            self.owed.add(item.remote, meta)  # a later MOVE fetches it under its new name
            if outcome is Outcome.VANISHED:
                self.log.info("{path}: vanished on worker before its fetch ({reason})",
                              path=path, reason=reason)  # fmt: skip
            elif outcome is Outcome.NOT_A_FILE and item in guesses:
                self.owed.need_resync()
                self.log.warn(
                    "{path}: moved here from a directory this mirror does not have;"
                    " a full resync follows to fetch what is below it", path=path,
                )  # fmt: skip
            elif outcome is Outcome.NOT_A_FILE:
                self.log.info("{path}: not a file on worker any more ({reason})",
                              path=path, reason=reason)  # fmt: skip
            else:
                self.stats.skipped += 1
                what = (
                    "cannot be carried by this backend"
                    if outcome is Outcome.UNSUPPORTED
                    else "could not be fetched"
                )
                self.log.warn("{path}: {what} ({reason}); skipped",
                              path=path, what=what, reason=reason)  # fmt: skip
        # After the metadata, so the mode and mtime set above are on disk too.
        make_durable(
            [item.local for item, outcome, _ in results if outcome is Outcome.DONE], self.datadir
        )
        return self.stats

    def _changed_since(self, st: os.stat_result, meta: Meta) -> bool:
        """The fetched file is not the one the FWRITE described (size, or mtime if kept)."""
        if meta.size is not None and st.st_size != meta.size:
            return True
        keeps_mtime = getattr(self.fetcher, "keeps_mtime", False)
        return keeps_mtime and meta.mtime_ns is not None and st.st_mtime_ns != meta.mtime_ns

    def checkpoint(self) -> None:
        """Save what the mirror owes; call before saving the serial that relies on it."""
        self.owed.save()

    def needs_resync(self) -> bool:
        """The mirror lost track of what it owes, or lacks a moved directory: INIT again."""
        return self.owed.resync

    def resynced(self) -> None:
        """A full INIT begins: it names everything again, so nothing owed before counts."""
        self.owed.resynced()
