"""Replaying records into the mirror: the order and idempotence rules of the backup host.

Whatever a server sends, every path goes through ``Applier.confine``
(``fs_mirror.confine``) before anything touches the disk; a path it refuses
is logged and skipped, and the rest of the batch applies.

Records are replayed in order and are idempotent, so a batch interrupted by
a crash or a dropped connection is simply replayed from the saved serial.
File contents are not fetched inline: FWRITE paths are collected per batch
(``fs_mirror.pending``) and handed to the fs_sync fetcher once, at the end,
which writes a temporary file and renames it over the old one, so a hard
link to the old file (a rotated backup) keeps its content.  Metadata-only
changes to a file shared with a rotated backup are made on a copy for the
same reason.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from fs_mirror.confine import Confinement, HostilePath, ReservedPath
from fs_mirror.durable import make_durable
from fs_mirror.nodes import Stats, differs, put_symlink, remove_node, set_meta, show
from fs_mirror.nodes import lstat as _lstat
from fs_mirror.nodes import merge as _merge
from fs_mirror.owed import Owed
from fs_mirror.pending import Pending
from fs_mirror.replay import checkpoints
from fs_mirror.rotate import unshare
from fs_mirror.state import STAGING_NAME
from fs_sync.interface import Fetcher, FetchItem, Outcome, Result, is_local_disk_error
from protocol.paths import is_under
from protocol.records import Action, Meta, Record

_NO_META = Meta()
#: Records that can turn a directory into a symlink or remove it: after one,
#: nothing ``confine`` learnt earlier in the batch is trusted any more.
_RESHAPING = (Action.DELETE, Action.MOVE, Action.SYMLINK)


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
        self._pending = Pending()  # this batch's FWRITEs, fetched at its end
        # Files fetched too late or refused: a later MOVE turns them into a
        # fetch of the new name (see fs_mirror.owed).
        self.owed = owed if owed is not None else Owed()
        # What it learns of real directories is forgotten at and below what
        # each _RESHAPING record changed, and wholly at each batch's start and
        # end: only CREATE, FWRITE and ATTRIB run meanwhile, and none of them
        # makes a symlink or removes a directory.
        self._paths = Confinement(self.datadir)

    def confine(self, path: bytes) -> bytes:
        """The local path for worker ``path``, or HostilePath/ReservedPath when it is unsafe."""
        return self._paths.local(path)

    def _make_parents(self, local: bytes) -> None:
        for replaced in self._paths.make_parents(local):
            self._pending.discard(replaced)  # a file that had to become a directory

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
        progress: Callable[[int], None] | None = None,
        first: int | None = None,  # the serial of records[0]: report mode's, unused here
    ) -> Deferred[Stats]:
        """Apply ``records`` in order, then fetch the batch's files once.

        ``serial`` and ``init`` say where the records come from.  The first
        ``replayed`` records were already applied to the disk by a run that
        was killed before it could save their serial: for them only what
        they owe is worked out again (their fetches), since repeating a MOVE
        whose source earlier records made anew would replace the moved tree.
        ``progress(i)`` saves that ``records[: i + 1]`` are on disk: the
        applier calls it around the MOVEs that need it (``fs_mirror.replay``)
        and once all disk changes are made, before the fetch (the connection
        passes it only for a chunk with a MOVE still to apply).

        A record that cannot be applied (a refused path, a name too long for
        this file system, ...) is logged in one line, counted and skipped:
        the rest of the batch still applies.  Fires with the running Stats;
        fails only when the local disk cannot take writes (``LocalDiskError``
        or another OSError with ENOSPC, EROFS, ...) or the fetcher cannot
        serve at all (``BackendUnavailable``), and then the batch must not
        count as applied: replaying it is safe, records are idempotent.
        """
        self._paths.forget()
        records = list(records)
        marks = set(checkpoints(records, replayed)) if progress is not None else set()
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
                        self._reshaped(record)
                if index in marks:
                    assert progress is not None
                    progress(index)
            if progress is not None:
                progress(len(records) - 1)
            return self._fetch_pending()
        except Exception:
            self._pending.clear()
            return fail()  # the local disk refused: the batch did not happen
        finally:
            self._paths.forget()

    def _reshaped(self, record: Record) -> None:
        """What was learnt of directories at or below what `record` changed is stale."""
        self._paths.forget_tree(self.datadir + record.path)
        if record.action is Action.MOVE and record.target is not None:
            self._paths.forget_tree(self.datadir + record.target)

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
            self._pending.drop(path)
            self._pending.add(path, record.meta)
        elif action is Action.CREATE:
            owed.settle(path)
            self._create(path, local, record.meta)
        elif action is Action.DELETE:
            owed.settle_tree(path)
            self._pending.drop(path)
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
            self._pending.drop(path)
            self._pending.add(path, record.meta)
        elif action is Action.CREATE:
            owed.settle(path)
            self._pending.discard(path)
        elif action in (Action.DELETE, Action.SYMLINK):
            owed.settle_tree(path)
            self._pending.drop(path)
        elif action is Action.MOVE:
            assert record.target is not None
            meta, src_pending, src_owed = self._follow_move(path, record.target, record.meta)
            if not src_pending:  # fetched again: cheap, and right whatever the first run did
                st = _lstat(self.confine(record.target))  # the first run moved it here
                moved_dir = st is not None and stat.S_ISDIR(st.st_mode)
                self._pending.add(record.target, meta, guessed=not src_owed or moved_dir)
        elif action is Action.ATTRIB:
            self._pending.merge(path, record.meta)
            if path in owed:
                owed.add(path, _merge(owed.meta(path), record.meta))

    def _create(self, path: bytes, local: bytes, meta: Meta) -> None:
        self._pending.discard(path)
        self._make_parents(local)
        st = _lstat(local)
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                os.unlink(local)  # a file or symlink where the worker has a directory
            os.mkdir(local, 0o755 if meta.mode is None else meta.mode & 0o777)
        set_meta(local, meta, self.as_root)
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
            # What the mirror has under src is not what moved.  A directory here is
            # never removed for that debt: the fetch is a guess (see _fetch_pending).
            moved_dir = src_st is not None and stat.S_ISDIR(src_st.st_mode)
            self._pending.add(dst, meta, guessed=moved_dir)
        if src_st is None:
            if not src_pending and not src_owed:
                self._pending.add(dst, meta, guessed=True)  # nothing to move here: fetch the result
            return
        self._make_parents(dst_local)
        dst_st = _lstat(dst_local)
        if dst_st is not None and (stat.S_ISDIR(dst_st.st_mode) or stat.S_ISDIR(src_st.st_mode)):
            remove_node(dst_local)  # rename() only replaces an empty dir, or file by file
        os.rename(src_local, dst_local)
        if meta != _NO_META:
            set_meta(dst_local, meta, self.as_root)

    def _follow_move(self, src: bytes, dst: bytes, meta: Meta) -> tuple[Meta, bool, bool]:
        """Move what is pending and owed at or below ``src`` to ``dst`` (no disk change).

        Returns the metadata for ``dst``, whether ``src`` itself was pending
        (its fetch now goes to ``dst``) and whether it was owed.
        """
        self.owed.settle_tree(dst)
        owed = dict(self.owed.take_tree(src))
        src_owed = src in owed
        meta = _merge(owed.pop(src, _NO_META), meta)
        src_pending = self._pending.move(src, dst)
        for key, owed_meta in owed.items():  # fetched too late under the old name
            self._pending.add(dst + key[len(src) :], owed_meta)
        return meta, src_pending, src_owed

    def _symlink(self, path: bytes, local: bytes, target: bytes, meta: Meta) -> None:
        self._pending.drop(path)
        self._make_parents(local)
        put_symlink(local, target, self.tmpdir)
        set_meta(local, meta, self.as_root)
        self._echo(f"SYMLINK '{show(path)}' -> '{show(target)}'")

    def _attrib(self, path: bytes, local: bytes, meta: Meta) -> None:
        if self._pending.merge(path, meta):
            return
        st = _lstat(local)
        if st is None:
            self.log.debug("ATTRIB of absent {path}: skipped", path=show(path))
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and differs(st, meta, self.as_root):
            unshare(local, self.as_root)  # keep the rotated backup's metadata
            st = os.lstat(local)
        set_meta(local, meta, self.as_root, st)
        self._echo(f"ATTRIB '{show(path)}'")

    # -- the end-of-batch fetch ----------------------------------------------
    def _fetch_pending(self) -> Deferred[Stats]:
        pending, guessed = self._pending.take()
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
                self._paths.forget_tree(local)
            item = FetchItem(remote=path, local=local)
            items.append(item)
            metas.append(meta)
            if path in guessed:
                guesses.add(item)
        if not items:
            return succeed(self.stats)
        fetched = self.fetcher.fetch(items)
        return fetched.addCallback(self._fetched, dict(zip(items, metas, strict=True)), guesses)

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
                set_meta(item.local, meta, self.as_root, st)
                self.stats.files += 1
                self.stats.bytes += st.st_size
                self._echo(f"WRITE FILE '{path}'")
                continue
            if not (outcome is Outcome.VANISHED and item in guesses):
                # A later MOVE fetches it under its new name.  A guess that vanished
                # is no debt: nothing said a file was there (a directory, maybe).
                self.owed.add(item.remote, meta)
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

    def finish_init(self) -> Deferred[None]:
        """Nothing to do here once an INIT is applied (the client sweeps the mirror)."""
        return succeed(None)
