"""The journal's cooperative walks: ``scan_tree`` under ``task.Cooperator``, chunk by chunk.

A walk may cover millions of entries (boot, overflow recovery, a new
include), so it runs as a generator the cooperator steps between reactor
turns, and each chunk of changes is committed as it comes (or, on a first
boot, loaded silently). The walker remembers which walks are asked for or
running (:class:`Job`), because a rename told meanwhile may move entries out
from under a walk that has not reached them: the journal asks
:meth:`Walker.missed` and walks the destination again.

Slices of walking end by the reactor's own clock (``Clock.seconds``), not by
Twisted's default wall-clock timer: the same time in production, and under a
test's ``task.Clock`` the slices, and so the order in which the walks of one
turn take their steps, are the test's to decide rather than the machine load's.

A walk that fails is logged and asked for again, with a growing delay while
it keeps failing; only a ``strict`` walk (the boot) fails for good, as
:class:`WalkFailed`, since mirrord must not serve a snapshot it knows to be
incomplete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mirrord.paths import overlaps
from mirrord.scan import ScanStats, scan_tree
from mirrord.seams import Clock, Membership, SnapshotReader, Watch
from mirrord.store import path_key
from mirrord.unreadable import show
from mirrord.values import Change

__all__ = ["RETRY_MAX", "SLICE", "Job", "WalkFailed", "WalkSink", "Walker"]

RETRY_MAX = 30.0  # seconds between attempts while walks (or commits) keep failing
SLICE = 0.01  # seconds of walking per reactor turn (Twisted's default slice)


class WalkFailed(OSError):
    """The boot walk of an include root failed: nothing may be served (exit 1)."""


class WalkSink(Protocol):
    """Where a walk's chunks go (the journal)."""

    def commit_chunk(self, changes: Sequence[Change]) -> object: ...

    def load_chunk(self, changes: Sequence[Change], *, sync: bool) -> None: ...

    def report(self, path: bytes, error: OSError) -> None: ...

    def root_gone(self, root: bytes) -> None: ...

    def walk_again(self, roots: Sequence[bytes]) -> None: ...


class Job:
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


def slices(clock: Clock, seconds: float) -> Callable[[], Callable[[], bool]]:
    """The cooperator's slice: it ends once ``seconds`` of ``clock`` time have passed."""

    def start() -> Callable[[], bool]:
        end = clock.seconds() + seconds
        return lambda: clock.seconds() >= end

    return start


class Walker:
    """Runs walks one after another on a cooperator; ``jobs`` are those not ended."""

    def __init__(
        self,
        store: SnapshotReader,
        identity: Membership,
        watch: Watch,
        reactor: Clock,
        sink: WalkSink,
        log: Logger,
        progress_every: float = 5.0,
        slice_seconds: float = SLICE,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.identity, self.watch, self.reactor = store, identity, watch, reactor
        self.sink, self.log, self.progress_every = sink, log, progress_every
        self.status = status  # the progress line again, for systemd's STATUS=
        self.jobs: set[Job] = set()
        self.stopped = False
        self._failures = 0  # failed walks in a row
        # Twisted types the scheduler's result as its zope interface: the same object
        self._coop = task.Cooperator(
            terminationPredicateFactory=slices(reactor, slice_seconds),
            scheduler=lambda f: cast(IDelayedCall, reactor.callLater(0, f)),
        )

    def missed(self, src: bytes) -> bool:
        """Does a walk asked for or running miss entries if ``src`` moves away now?"""
        return any(job.missed(src) for job in self.jobs)

    def stop(self) -> None:
        """End every walk (the next boot rescans); they end quietly."""
        self.stopped = True
        self._coop.stop()

    def _progress(self, label: str, stats: ScanStats) -> None:
        """One progress line of a long walk, logged and told to systemd."""
        rate = stats.entries_seen / max(stats.seconds, 1e-6)
        self.log.info(
            "{label}: {entries} entries, {rate:.0f}/s",
            label=label,
            entries=stats.entries_seen,
            rate=rate,
        )
        if self.status is not None:
            self.status(f"{label}: {stats.entries_seen} entries, {rate:.0f}/s")

    def walk(
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

        ``first`` loads the chunks silently (first boot); ``follow_up`` (a walk a
        reconcile asked for) hands a root found gone to ``sink.root_gone``
        instead of deleting it. A failure ends the
        walk; ``strict`` (the boot) makes it a :class:`WalkFailed`, otherwise
        the roots are asked for again.
        """
        jobs = [Job(root, stats) for root in roots]  # registered before they start
        self.jobs.update(jobs)

        def steps() -> Iterator[None]:
            began = last = self.reactor.seconds()
            for job in jobs:
                job.started = True
                try:
                    for chunk in scan_tree(
                        job.root,
                        self.identity,
                        self.store,
                        self.watch,
                        full=full,
                        listing=listing,
                        stats=stats,
                        report=self.sink.report,
                        on_root_gone=self.sink.root_gone if follow_up else None,
                        records=not first,
                    ):
                        if first:
                            self.sink.load_chunk(chunk, sync=False)
                        elif chunk:
                            self.sink.commit_chunk(chunk)
                        now = self.reactor.seconds()
                        if label and now - last >= self.progress_every:
                            last = now
                            self._progress(label, stats)
                        yield None
                finally:
                    self.jobs.discard(job)
            if first:
                self.sink.load_chunk((), sync=True)
            self._failures = 0
            if last != began and self.status is not None:  # its progress was told: end it
                self.status(f"{label} done: {stats.entries_seen} entries")

        def forget(result: object) -> object:
            self.jobs.difference_update(jobs)  # also those a failure skipped
            return result

        def failed(f: Failure) -> None:
            if f.check(task.SchedulerStopped):  # ended by ``stop``: not a failure
                return
            roots = [j.root for j in jobs]
            if strict:
                self.log.failure("walk of {roots} failed", f, roots=roots)
                raise WalkFailed(
                    f"the boot scan of {', '.join(map(show, roots))} failed "
                    f"({f.value!r}); not serving a snapshot known to be incomplete"
                )
            if self.stopped:
                return
            self.log.error(
                "walk of {roots} failed ({error!r}); walking them again",
                roots=", ".join(map(show, roots)),
                error=f.value,
            )
            self._failures += 1
            delay = min(0.1 * 2**self._failures, RETRY_MAX)
            self.reactor.callLater(delay, self.sink.walk_again, roots)

        d = self._coop.coiterate(steps()).addBoth(forget).addErrback(failed)
        return d.addCallback(lambda _: None)
