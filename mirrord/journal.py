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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from mirrord.scan import (
    DIRLIST,
    LOST,
    Change,
    ScanStats,
    disk_entry,
    move_meta,
    overlaps,
    parent_path,
    reconcile,
    scan_roots,
    scan_tree,
)
from mirrord.store import DIR, Store, path_key
from protocol.records import Action, Record

__all__ = ["Journal", "WalkFailed", "scan_roots"]

Watch = Callable[[bytes], bool]
_REMAP_LIMIT = 10_000  # longer queues skip re-queueing (still correct, only noisier)
_WARNED_MAX = 10_000  # paths whose read problem was logged, remembered to log each once
_RETRY_MAX = 30.0  # seconds between attempts while the store keeps failing
LOST_KEPT = 4096  # paths kept as lost until their rename is told (oldest dropped)


class WalkFailed(OSError):
    """The boot walk of an include root failed: nothing may be served (exit 1)."""


class _Job:
    """A cooperative walk of one sub-tree, from when it is asked for until it ends.

    A walk waits for the cooperator before it starts; a rename in between
    would move its whole root out from under it, so a job that has not
    started yet misses every overlapping move.
    """

    def __init__(self, root: bytes, stats: ScanStats) -> None:
        self.root, self.stats = root, stats
        self.started = False

    def missed(self, src: bytes) -> bool:
        """Could moving ``src`` away hide entries this walk has not checked yet?"""
        if not overlaps(self.root, src):
            return False
        if not self.started:
            return True
        pos, skey = path_key(self.stats.position), path_key(src)
        return not (pos > skey and not pos.startswith(skey + b"\0"))  # not passed yet


class Journal:
    """Collects changes per reactor turn, commits them, wakes waiters."""

    def __init__(
        self,
        store: Store,
        identity: Any,
        watch: Watch,
        reactor: Any,
        log: Logger | None = None,
        *,
        progress_every: float = 5.0,
    ) -> None:
        self.store, self.identity, self.watch, self.reactor = store, identity, watch, reactor
        self.log = log if log is not None else Logger()
        self.progress_every = progress_every
        self._queue: list[tuple[Any, ...] | None] = []  # None: re-queued by a move
        self._mark = -1  # index of the last move queued: dirty paths merge only after it
        # so a rename finds what it re-queues without reading the whole queue:
        self._at: dict[bytes, list[int]] = {}  # dirty path -> its queue indices
        self._above: set[bytes] = set()  # ancestors of those paths (a superset: may be stale)
        self._call: Any = None
        self._waiters: list[tuple[int, defer.Deferred[int]]] = []
        self._jobs: set[_Job] = set()
        self._overflow: defer.Deferred[None] | None = None
        self._overflow_again: str | None = None  # label of a recheck asked for meanwhile
        self.commits = 0
        self.unreadable: set[bytes] = set()  # directories stored as unreadable
        self._warned: set[bytes] = set()
        self._failures = 0  # failed commits in a row
        self._walk_failures = 0  # failed walks in a row
        self._stopped = False
        # Paths an event said exist but that were gone when their turn was
        # written (see ``dirty``), and roots of follow-up walks found gone:
        # path -> (written, recursive), oldest first, bounded.
        self._lost: OrderedDict[bytes, tuple[bool, bool]] = OrderedDict()
        self._coop = task.Cooperator(scheduler=lambda f: reactor.callLater(0, f))

    # -- the sink the monitor calls ------------------------------------------------
    def dirty(
        self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
    ) -> None:
        """``path`` may have changed; ``recursive``: so may everything below it;
        ``written``: its content was written (FWRITE even if its stat looks unchanged);
        ``present``: the event said it exists (created, written, chmodded), so if it
        is gone when the turn is written, a rename still to be told took it: it is
        kept, and looked at again under its new name when that rename comes."""
        at = self._at.get(path)
        if at and at[-1] > self._mark:  # queued since the last move: merge
            _, _, was_recursive, was_written, was_present = self._queue[at[-1]]  # type: ignore[misc]
            self._queue[at[-1]] = (
                "dirty",
                path,
                recursive or was_recursive,
                written or was_written,
                present and was_present,  # a delete among them says it is gone
            )
        else:
            if at is None:
                at = self._at[path] = []
                up, above = path, self._above
                while up != b"/" and (up := parent_path(up)) not in above:
                    above.add(up)  # ancestors of a known one are known
            at.append(len(self._queue))
            self._queue.append(("dirty", path, recursive, written, present))
        self._schedule()

    def moved(self, src: bytes, dst: bytes) -> None:
        """``src`` was renamed to ``dst`` (both watched).

        Paths queued dirty under ``src`` are re-queued under ``dst`` after the
        move: by the end of the turn they only exist there.
        """
        follow: list[tuple[bytes, bool, bool, bool]] = []
        if src not in self._above:  # nothing queued below ``src``: O(1) per queued ``src``
            for index in self._at.pop(src, ()):
                follow.append((dst, *self._queue[index][2:]))  # type: ignore[index]
                self._queue[index] = None
        elif len(self._queue) <= _REMAP_LIMIT:
            for index, item in enumerate(self._queue):
                if (
                    item
                    and item[0] == "dirty"
                    and overlaps(item[1], src)
                    and len(item[1]) >= len(src)
                ):
                    follow.append((dst + item[1][len(src) :], item[2], item[3], item[4]))
                    self._queue[index] = None
                    self._at.pop(item[1], None)
        # A walk that has not yet passed ``src`` may run before this move is
        # committed and record, at ``src``, what the disk holds there after the
        # rename: the destination then needs a walk of its own.
        stale = any(job.missed(src) for job in self._jobs)
        self._queue.append(("move", src, dst, stale))
        self._mark = len(self._queue) - 1
        for path, recursive, written, present in follow:
            self.dirty(path, recursive, written, present)
        self._schedule()

    def add(self, changes: Iterable[Change]) -> None:
        """Changes computed elsewhere, committed with this turn's."""
        self._queue.append(("changes", list(changes)))
        self._schedule()

    def overflow(self) -> defer.Deferred[None]:
        """Events were lost: re-check every root, listing only changed directories."""
        self.log.warn("inotify queue overflow: rescanning changed directories")
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
        d = self._walk(roots, stats, label, full=False)

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
        return self._walk(scan_roots(self.identity, [root]), ScanStats(), "rescan")

    # -- waiting -------------------------------------------------------------------
    def wait_after(self, serial: int) -> defer.Deferred[int]:
        """Fires with the head once it is above ``serial``; cancel to stop waiting."""
        if self.store.head > serial:
            return defer.succeed(self.store.head)

        def cancel(d: defer.Deferred[int]) -> None:
            try:
                self._waiters.remove((serial, d))
            except ValueError:
                pass

        d: defer.Deferred[int] = defer.Deferred(cancel)
        self._waiters.append((serial, d))
        return d

    def _wake(self) -> None:
        head = self.store.head
        ready = [w for w in self._waiters if w[0] < head]
        if ready:
            self._waiters = [w for w in self._waiters if w[0] >= head]
            for _, d in ready:
                d.callback(head)

    def stop(self) -> None:
        """Before the store closes: commit the queue, end the walks (the next boot rescans)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._flush()
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()  # the rescans that flush queued: the next boot does them
        self._call = None
        self._coop.stop()

    # -- the per-turn commit -------------------------------------------------------
    def _schedule(self) -> None:
        if self._call is None and not self._stopped:
            n = self._failures  # at once after one failure, then backing off
            delay = 0.0 if n <= 1 else min(0.05 * 2**n, _RETRY_MAX)
            self._call = self.reactor.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._call = None
        queue, self._queue, self._mark = self._queue, [], -1
        self._at, self._above = {}, set()
        follow: list[tuple[bytes, str]] = []
        rescans: list[bytes] = []
        batch = self.store.transaction()
        try:
            for item in queue:
                if item is None:
                    continue
                if item[0] == "dirty":
                    follow += self._reconcile(batch, item[1], item[2], item[3], item[4])
                elif item[0] == "move":
                    follow += self._move(batch, item[1], item[2])
                    if item[3] or any(job.missed(item[1]) for job in self._jobs):
                        rescans.append(item[2])
                else:
                    self._apply(batch, item[1])
            before = self.store.head
            head = batch.commit()
        except Exception as e:
            batch.abort()
            self._redo(queue, e)
            return
        if self._failures:
            self.log.info("commits work again after {n} failed", n=self._failures)
            self._failures = 0
        self.commits += 1
        if head != before:
            self._wake()
        for path, kind in follow:
            self._walk([path], ScanStats(), "", listing=kind == DIRLIST, follow_up=True)
        for path in rescans:
            self.dirty(path, recursive=True)

    def _redo(self, queue: Sequence[tuple[Any, ...] | None], error: Exception) -> None:
        """A turn's commit failed: queue dirty again what it touched, so nothing is lost."""
        self._failures += 1
        if self._failures == 1:
            self.log.error(
                "commit of {n} queued changes failed ({error!r}); rescanning what they touched",
                n=len(queue),
                error=error,
            )
        for item in queue:
            if item is None:
                continue
            if item[0] == "dirty":
                self.dirty(item[1], item[2], item[3])  # not ``present``: a delete may be due
            elif item[0] == "move":  # the snapshot still has src: delete it, walk dst
                self.dirty(item[1])
                self.dirty(item[2], recursive=True)
            else:
                self.add(item[1])

    def _apply(self, batch: Any, changes: Sequence[Change]) -> None:
        ops = [op for _, op in changes if op is not None]
        batch.apply(ops)
        batch.append(record for record, _ in changes if record is not None)
        self._track(ops)

    def _track(self, ops: Iterable[Any]) -> None:
        """Keep ``unreadable`` equal to the snapshot's unreadable directories."""
        found = self.unreadable
        for op in ops:
            name, path = op[0], op[1]
            if name == "put":
                entry = op[2]
                if entry.unreadable:
                    if path not in found:
                        found.add(path)
                        self._warn(path, "permission denied")
                elif found and path in found:
                    found.discard(path)
                    self._warned.discard(path)
                    self.log.info("{path} can be read again", path=_show(path))
            elif not found:
                continue
            elif name == "del":
                found.discard(path)
            elif name == "deltree":
                for p in [p for p in found if overlaps(p, path) and len(p) >= len(path)]:
                    found.discard(p)
            elif name == "move":
                dst = op[2]
                for p in [p for p in found if overlaps(p, path) and len(p) >= len(path)]:
                    found.discard(p)
                    found.add(dst + p[len(path) :])

    def _warn(self, path: bytes, error: object) -> None:
        """Log a path we cannot read, once (until it can be read again)."""
        if path in self._warned:
            return
        if len(self._warned) >= _WARNED_MAX:
            if len(self._warned) == _WARNED_MAX:
                self._warned.add(b"")  # a marker: say once that we stop saying it
                self.log.warn(
                    "cannot read more than {n} paths; not logging the rest", n=_WARNED_MAX
                )
            return
        self._warned.add(path)
        self.log.warn(
            "cannot read {path} ({error}): kept as it was, what is below it neither sent "
            "nor deleted, until it can be read",
            path=_show(path),
            error=error,
        )

    def _reconcile(
        self,
        batch: Any,
        path: bytes,
        recursive: bool,
        written: bool = False,
        present: bool = False,
    ) -> list[tuple[bytes, str]]:
        if not present and self._lost:
            # told again without "it exists" (deleted, or moved away itself), and
            # after any rename of a parent that would explain it: settled
            self._lost.pop(path, None)
        changes, follow = reconcile(
            path,
            self.identity,
            batch,
            self.watch,
            recursive=recursive,
            written=written,
            present=present,
            report=self._warn,
        )
        if follow is not None and follow[1] == LOST:  # renamed away with a parent, told later
            self._keep_lost(path, written, recursive)
            return []
        if self._lost and any(r is not None and r.action is Action.DELETE for r, _ in changes):
            self._forget_lost(path)  # deleted for real: nothing to look for below it
        self._apply(batch, changes)
        return [follow] if follow is not None else []

    def _move(self, batch: Any, src: bytes, dst: bytes) -> list[tuple[bytes, str]]:
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
            return self._reconcile(batch, src, False)
        entry = batch.get(src)
        if entry is None or src not in self.identity:
            return self._reconcile(batch, dst, True)
        if not self._has_parent(batch, dst):
            return self._reconcile(batch, src, False) + self._reconcile(batch, dst, True)
        record = Record(Action.MOVE, src, target=dst, meta=move_meta(entry))
        self._apply(batch, [(record, ("move", src, dst))])
        follow = self._found_again(batch, src, dst)
        if disk_entry(dst) is None:
            return follow
        return follow + self._reconcile(batch, dst, False)

    def _found_again(self, batch: Any, src: bytes, dst: bytes) -> list[tuple[bytes, str]]:
        """Paths kept as lost below ``src`` are looked at under ``dst`` now that it moved."""
        if not self._lost:
            return []
        under = src + b"/"
        found = [p for p in self._lost if p == src or p.startswith(under)]
        follow: list[tuple[bytes, str]] = []
        for path in found:
            written, recursive = self._lost.pop(path)
            follow += self._reconcile(batch, dst + path[len(src) :], recursive, written, True)
        return follow

    def _keep_lost(self, path: bytes, written: bool, recursive: bool) -> None:
        self._lost[path] = (written, recursive)
        if len(self._lost) > LOST_KEPT:
            self._lost.popitem(last=False)

    def _walk_root_gone(self, root: bytes) -> None:
        """A follow-up walk found its directory gone: the event saying why is to come.

        It was there when its turn was written, and its parent is watched, so
        a delete or a rename of it or of a parent is still unread. Deleting it
        now would drop it from that rename's MOVE, and what is below it, never
        walked, would be missed for good: it is kept as lost instead, to be
        walked whole under its new name (a delete settles it, see
        ``_reconcile``; a lost event, the next verification).
        """
        self._keep_lost(root, False, True)

    def _forget_lost(self, path: bytes) -> None:
        """``path`` is deleted: what was kept as lost at or below it is settled."""
        self._lost.pop(path, None)
        under = path + b"/"
        for key in [p for p in self._lost if p.startswith(under)]:
            del self._lost[key]

    def _has_parent(self, batch: Any, path: bytes) -> bool:
        """Is ``path``'s directory in the snapshot (or ``path`` a top of the tree)?"""
        parent = parent_path(path)
        known = batch.get(parent)
        if known is not None and known.kind == DIR:
            return True
        return parent not in self.identity or path in set(self.identity.roots())

    # -- cooperative walks ---------------------------------------------------------
    def _walk(
        self,
        roots: Iterable[bytes],
        stats: ScanStats,
        label: str,
        *,
        full: bool = True,
        listing: bool = False,
        first: bool = False,
        strict: bool = False,
        follow_up: bool = False,
    ) -> defer.Deferred[None]:
        """Walk ``roots`` cooperatively, committing chunk by chunk.

        A failure ends the walk; ``strict`` (the boot) makes it a
        :class:`WalkFailed`, otherwise the roots are marked dirty again.
        """
        jobs = [_Job(root, stats) for root in roots]  # registered before they start
        self._jobs.update(jobs)

        def steps() -> Iterator[None]:
            last = self.reactor.seconds()
            for job in jobs:
                root = job.root
                job.started = True
                try:
                    for chunk in scan_tree(
                        root,
                        self.identity,
                        self.store,
                        self.watch,
                        full=full,
                        listing=listing,
                        stats=stats,
                        report=self._warn,
                        on_root_gone=self._walk_root_gone if follow_up else None,
                    ):
                        if first:
                            ops = [op for _, op in chunk]
                            self.store.load(ops, sync=False)
                            self._track(ops)
                        elif chunk:
                            self._commit(chunk)
                        now = self.reactor.seconds()
                        if label and now - last >= self.progress_every:
                            last = now
                            self.log.info(
                                "{label}: {entries} entries, {rate:.0f}/s",
                                label=label,
                                entries=stats.entries_seen,
                                rate=stats.entries_seen / max(stats.seconds, 1e-6),
                            )
                        yield None
                finally:
                    self._jobs.discard(job)
            if first:
                self.store.load((), sync=True)
            self._walk_failures = 0

        def forget(result: object) -> object:
            self._jobs.difference_update(jobs)  # also those a failure skipped
            return result

        def failed(f: Failure) -> None:
            if f.check(task.SchedulerStopped):  # ended by ``stop``: not a failure
                return
            roots = [j.root for j in jobs]
            if strict:
                self.log.failure("walk of {roots} failed", f, roots=roots)
                raise WalkFailed(
                    f"the boot scan of {', '.join(map(_show, roots))} failed "
                    f"({f.value!r}); not serving a snapshot known to be incomplete"
                )
            if self._stopped:
                return
            self.log.error(
                "walk of {roots} failed ({error!r}); walking them again",
                roots=", ".join(map(_show, roots)),
                error=f.value,
            )
            self._walk_failures += 1
            delay = min(0.1 * 2**self._walk_failures, _RETRY_MAX)
            self.reactor.callLater(delay, self._walk_again, roots)

        d = self._coop.coiterate(steps()).addBoth(forget).addErrback(failed)
        return d.addCallback(lambda _: None)

    def _walk_again(self, roots: Sequence[bytes]) -> None:
        if not self._stopped:
            for root in roots:
                self.dirty(root, recursive=True)

    def _commit(self, changes: Sequence[Change]) -> int:
        ops = [op for _, op in changes if op is not None]
        head = self.store.commit([r for r, _ in changes if r is not None], ops)
        self._track(ops)
        self.commits += 1
        self._wake()
        return head

    def boot(self, roots: Sequence[bytes], first: bool) -> defer.Deferred[None]:
        """First boot loads the snapshot silently; a smooth boot logs the differences."""
        started = time.monotonic()
        stats = ScanStats()
        if not first:
            stale = list(self._stale(set(roots)))
            if stale:
                self._commit(stale)
        d = self._walk(scan_roots(self.identity, roots), stats, "boot", first=first, strict=True)

        def done(_: object) -> None:
            if self._stopped:
                return
            seconds = time.monotonic() - started
            self.log.info(
                "boot scan of {entries} entries in {seconds:.1f}s ({rate:.0f}/s), head {head}",
                entries=stats.entries_seen,
                seconds=seconds,
                rate=stats.entries_seen / max(seconds, 1e-6),
                head=self.store.head,
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
                yield None, ("del", path)
            else:
                skip = True
                yield Record(Action.DELETE, path), ("deltree", path)


def _show(path: bytes) -> str:
    return path.decode(errors="replace")
