"""The one writer of the snapshot and the wmLog: batches a reactor turn into one commit.

The inotify monitor calls ``dirty``/``moved``/``overflow``/``rescan``; nothing
is read from disk then. At the end of the turn (``callLater(0)``) the queue is
replayed in order inside one store transaction whose reads see its own
writes, so a move after a change sees that change, and the whole turn costs
one fsync. Work that may be large (a new directory's contents, a changed
directory's listing, overflow recovery, boot) runs as a generator under
``task.Cooperator`` and commits chunk by chunk, so the reactor keeps serving.
Waiters (NEXT requests parked by the server) are woken after each commit.

Nothing is dropped when something fails. A turn whose commit fails (a
Berkeley DB error, a full disk) is logged once and everything it touched is
queued dirty again and reconciled at once, then with a growing delay while
the store keeps failing; a walk that fails is asked for again the same way.
Only the boot walk may not fail: mirrord must not serve a snapshot it knows
to be incomplete, so the boot fails with :class:`WalkFailed` (exit 1).
A directory the walks cannot read is logged once and counted
(``unreadable``) until it can be read or is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from mirrord.headtimes import HeadTimes
from mirrord.lost import LostPaths
from mirrord.paths import overlaps, parent_path
from mirrord.reconcile import reconcile
from mirrord.scan import ScanStats, disk_entry, scan_roots
from mirrord.seams import Clock, DelayedCall, Identity, Watch
from mirrord.store import Store
from mirrord.turn import TurnQueue
from mirrord.unreadable import Unreadable
from mirrord.values import (
    DIR,
    Change,
    Computed,
    Dirty,
    Drop,
    DropTree,
    ListingWalk,
    Lost,
    MoveTree,
    QueueItem,
    Renamed,
    Walk,
    move_meta,
)
from mirrord.waiters import Waiters
from mirrord.walks import RETRY_MAX, SLICE, Walker, WalkFailed
from protocol.records import Action, Record

__all__ = ["Journal", "WalkFailed", "scan_roots"]


class Journal:
    """Collects changes per reactor turn, commits them, wakes waiters.

    ``walk_slice``: seconds of ``reactor`` time the walks may take per reactor
    turn (0: one step each, as on a loaded machine; see ``walks``).
    """

    def __init__(
        self,
        store: Store,
        identity: Identity,
        watch: Watch,
        reactor: Clock,
        log: Logger | None = None,
        *,
        progress_every: float = 5.0,
        walk_slice: float = SLICE,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.identity, self.watch, self.reactor = store, identity, watch, reactor
        self.log = log if log is not None else Logger()
        self._queue = TurnQueue()
        self._call: DelayedCall | None = None
        self._waiters = Waiters()
        self.head_times = HeadTimes(store.head, reactor.seconds())  # for lag in seconds
        self._overflow: defer.Deferred[None] | None = None
        self._overflow_again: str | None = None  # label of a recheck asked for meanwhile
        self.commits = 0
        self._unreadable = Unreadable(self.log)
        self._failures = 0  # failed commits in a row
        self._stopped = False
        # Paths an event said exist but that were gone when their turn was
        # written (see ``dirty``), and roots of follow-up walks found gone,
        # looked at again when their rename is told.
        self._lost = LostPaths()
        self.walker = Walker(
            store,
            identity,
            watch,
            reactor,
            self,
            self.log,
            progress_every,
            walk_slice,
            status,
        )

    @property
    def unreadable(self) -> set[bytes]:
        """The directories stored as unreadable (for ``-k status``)."""
        return self._unreadable.paths

    # -- the sink the monitor calls ------------------------------------------------
    def dirty(
        self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
    ) -> None:
        """``path`` may have changed; ``recursive``: so may everything below it;
        ``written``: its content was written (FWRITE even if its stat looks unchanged);
        ``present``: the event said it exists (created, written, chmodded), so if it
        is gone when the turn is written, a rename still to be told took it: it is
        kept, and looked at again under its new name when that rename comes."""
        self._queue.dirty(Dirty(path, recursive, written, present))
        self._schedule()

    def moved(self, src: bytes, dst: bytes) -> None:
        """``src`` was renamed to ``dst`` (both watched).

        Paths queued dirty under ``src`` are re-queued under ``dst`` after the
        move: by the end of the turn they only exist there.
        """
        # A walk that has not yet passed ``src`` may run before this move is
        # committed and record, at ``src``, what the disk holds there after the
        # rename: the destination then needs a walk of its own.
        self._queue.renamed(Renamed(src, dst, stale=self.walker.missed(src)))
        self._schedule()

    def add(self, changes: Iterable[Change]) -> None:
        """Changes computed elsewhere, committed with this turn's."""
        self._queue.add(changes)
        self._schedule()

    def overflow(self) -> defer.Deferred[None]:
        """Events were lost: re-check every root, listing only changed directories
        (the monitor has logged the overflow; the rescan logs when it is done)."""
        return self.recheck("overflow")

    def verify(self) -> defer.Deferred[None]:
        """The periodic verification rescan: catches what inotify cannot see
        (a write through a hard link outside the tree, or through mmap)."""
        return self.recheck("verification")

    def recheck(self, label: str) -> defer.Deferred[None]:
        """Re-check every root against the snapshot, listing only changed directories
        (stat fields of every entry are still compared). A request while one runs
        is coalesced into one more run after it."""
        if self._overflow is not None:
            self._overflow_again = label
            return self._overflow
        started = time.monotonic()
        stats = ScanStats()
        roots = scan_roots(self.identity, self.identity.roots())
        d = self.walker.walk(roots, stats, label, full=False)

        def done(result: object) -> object:
            self.log.info(
                label + " rescan done in {seconds:.1f}s: {dirs} directories listed, "
                "{entries} entries",
                seconds=time.monotonic() - started,
                dirs=stats.dirs_listed,
                entries=stats.entries_seen,
            )
            self._overflow = None
            again, self._overflow_again = self._overflow_again, None
            if again is not None and not self._stopped:
                self.recheck(again)
            return result

        self._overflow = d.addBoth(done)
        return self._overflow

    def rescan(self, root: bytes) -> defer.Deferred[None]:
        """Compare all of ``root`` with the snapshot (a newly included tree)."""
        return self.walker.walk(scan_roots(self.identity, [root]), ScanStats(), "rescan")

    # -- waiting -------------------------------------------------------------------
    def wait_after(self, serial: int) -> defer.Deferred[int]:
        """Fires with the head once it is above ``serial``; cancel to stop waiting."""
        return self._waiters.wait_after(serial, self.store.head)

    def _wake(self) -> None:
        self.head_times.grew(self.store.head, self.reactor.seconds())
        self._waiters.wake(self.store.head)

    def stop(self) -> None:
        """Before the store closes: commit the queue, end the walks (the next boot rescans)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._flush()
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()  # the rescans that flush queued: the next boot does them
        self._call = None
        self.walker.stop()

    # -- the per-turn commit -------------------------------------------------------
    def _schedule(self) -> None:
        if self._call is None and not self._stopped:
            n = self._failures  # at once after one failure, then backing off
            delay = 0.0 if n <= 1 else min(0.05 * 2**n, RETRY_MAX)
            self._call = self.reactor.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._call = None
        queue = self._queue.drain()
        walks: list[Walk] = []
        rescans: list[bytes] = []
        before = self.store.head
        try:
            with self.store.transaction():  # its reads see the turn's own writes
                for item in queue:
                    match item:
                        case Dirty(path, recursive, written, present):
                            walks += self._reconcile(path, recursive, written, present)
                        case Renamed(src, dst, stale):
                            walks += self._move(src, dst)
                            if stale or self.walker.missed(src):
                                rescans.append(dst)
                        case Computed(changes):
                            self._apply(changes)
        except Exception as e:
            self._redo(queue, e)
            return
        if self._failures:
            self.log.info("commits work again after {n} failed", n=self._failures)
            self._failures = 0
        self.commits += 1
        if self.store.head != before:
            self._wake()
        for walk in walks:
            listing = isinstance(walk, ListingWalk)
            self.walker.walk([walk.path], ScanStats(), "", listing=listing, follow_up=True)
        for path in rescans:
            self.dirty(path, recursive=True)

    def _redo(self, queue: Sequence[QueueItem], error: Exception) -> None:
        """A turn's commit failed: queue dirty again what it touched, so nothing is lost."""
        self._failures += 1
        if self._failures == 1:
            self.log.error(
                "commit of {n} queued changes failed ({error!r}); rescanning what they touched",
                n=len(queue),
                error=error,
            )
        for item in queue:
            match item:
                case Dirty(path, recursive, written):
                    self.dirty(path, recursive, written)  # not ``present``: a delete may be due
                case Renamed(src, dst):  # the snapshot still has src: delete it, walk dst
                    self.dirty(src)
                    self.dirty(dst, recursive=True)
                case Computed(changes):
                    self.add(changes)

    def _apply(self, changes: Sequence[Change]) -> None:
        """Write ``changes`` in the open transaction (snapshot ops, then records)."""
        ops = [change.op for change in changes]
        self.store.apply(ops)
        self.store.append(change.record for change in changes if change.record is not None)
        self._unreadable.track(ops)

    def _reconcile(
        self, path: bytes, recursive: bool, written: bool = False, present: bool = False
    ) -> list[Walk]:
        if not present and self._lost:
            # told again without "it exists" (deleted, or moved away itself), and
            # after any rename of a parent that would explain it: settled
            self._lost.discard(path)
        changes, follow = reconcile(
            path,
            self.identity,
            self.store,
            self.watch,
            recursive=recursive,
            written=written,
            present=present,
            report=self._unreadable.warn,
        )
        if isinstance(follow, Lost):  # renamed away with a parent, told later
            self._lost.keep(path, written, recursive)
            return []
        if self._lost and any(
            c.record is not None and c.record.action is Action.DELETE for c in changes
        ):
            self._lost.forget(path)  # deleted for real: nothing to look for below it
        self._apply(changes)
        return [follow] if follow is not None else []

    def _move(self, src: bytes, dst: bytes) -> list[Walk]:
        """One queued rename, told in the log's story, which may lag the disk.

        Walks and reconciles look at the disk as it is *now*, ahead of events
        still queued or unread, so the snapshot may already lack ``dst``'s
        directory (deleted because it had been renamed away meanwhile). A MOVE
        there would make a client re-create it: the source is deleted instead
        and ``dst``'s highest missing directory is looked at again. Likewise a
        ``dst`` gone from the disk by now is not deleted here: the event that
        took it away (a rename of it or of a parent, a delete) is still to come
        and tells it in order, as a MOVE where it is one.
        """
        if dst not in self.identity:  # moved out of the mirrored trees
            return self._reconcile(src, False)
        entry = self.store.get(src)
        if entry is None or src not in self.identity:
            return self._reconcile(dst, True)
        if not self._has_parent(dst):
            return self._reconcile(src, False) + self._reconcile(dst, True)
        record = Record(Action.MOVE, src, target=dst, meta=move_meta(entry))
        self._apply([Change(MoveTree(src, dst), record)])
        follow = self._found_again(src, dst)
        if disk_entry(dst) is None:
            return follow
        return follow + self._reconcile(dst, False)

    def _found_again(self, src: bytes, dst: bytes) -> list[Walk]:
        """Paths kept as lost below ``src`` are looked at under ``dst`` now that it moved."""
        if not self._lost:
            return []
        follow: list[Walk] = []
        for path, written, recursive in self._lost.take(src):
            follow += self._reconcile(dst + path[len(src) :], recursive, written, True)
        return follow

    def _has_parent(self, path: bytes) -> bool:
        """Is ``path``'s directory in the snapshot (or ``path`` a top of the tree)?"""
        parent = parent_path(path)
        known = self.store.get(parent)
        if known is not None and known.kind == DIR:
            return True
        return parent not in self.identity or path in set(self.identity.roots())

    # -- what the walks hand back (``walks.WalkSink``) -----------------------------
    def commit_chunk(self, changes: Sequence[Change]) -> int:
        """Commit one chunk of a walk (or the boot's stale trees) on its own."""
        ops = [change.op for change in changes]
        head = self.store.commit([c.record for c in changes if c.record is not None], ops)
        self._unreadable.track(ops)
        self.commits += 1
        self._wake()
        return head

    def load_chunk(self, changes: Sequence[Change], *, sync: bool) -> None:
        """Load one chunk of the first boot's walk silently (no records)."""
        ops = [change.op for change in changes]
        self.store.load(ops, sync=sync)
        self._unreadable.track(ops)

    def report(self, path: bytes, error: OSError) -> None:
        """A walk could not read or stat ``path``: logged once."""
        self._unreadable.warn(path, error)

    def root_gone(self, root: bytes) -> None:
        """A follow-up walk found its directory gone: the event saying why is to come.

        It was there when its turn was written, and its parent is watched, so
        a delete or a rename of it or of a parent is still unread. Deleting it
        now would drop it from that rename's MOVE, and what is below it, never
        walked, would be missed for good: it is kept as lost instead, to be
        walked whole under its new name (a delete settles it, see
        ``_reconcile``; a lost event, the next verification).
        """
        self._lost.keep(root, False, True)

    def walk_again(self, roots: Sequence[bytes]) -> None:
        """A walk failed: its roots are looked at again (unless stopping)."""
        if not self._stopped:
            for root in roots:
                self.dirty(root, recursive=True)

    def boot(self, roots: Sequence[bytes], first: bool) -> defer.Deferred[None]:
        """First boot loads the snapshot silently; a smooth boot logs the differences."""
        started = time.monotonic()
        stats = ScanStats()
        head = self.store.head
        if not first:
            stale = list(self._stale(set(roots)))
            if stale:
                self.commit_chunk(stale)
        d = self.walker.walk(
            scan_roots(self.identity, roots), stats, "boot", first=first, strict=True
        )

        def done(_: object) -> None:
            if self._stopped:
                return
            seconds = time.monotonic() - started
            changed = "" if first else f", {self.store.head - head} changes since the last run"
            self.log.info(
                "boot scan of {entries} entries in {seconds:.1f}s ({rate:.0f}/s), head {head}"
                "{differences}",
                entries=stats.entries_seen,
                seconds=seconds,
                rate=stats.entries_seen / max(seconds, 1e-6),
                head=self.store.head,
                differences=changed,
            )

        return d.addCallback(done)

    def _stale(self, roots: set[bytes]) -> Iterator[Change]:
        """Snapshot trees outside today's roots (an include was removed): delete them."""
        after, skip = None, False
        while rows := self.store.iter_tree(after=after, limit=1, skip_subtree=skip):
            path = rows[0][0]
            after = path
            if path in roots:
                skip = True
            elif any(overlaps(path, root) for root in roots):  # an ancestor of a root
                skip = False
                yield Change(Drop(path))
            else:
                skip = True
                yield Change(DropTree(path), Record(Action.DELETE, path))
