"""Turn raw inotify events into calls on a sink: dirty paths, moves, overflow.

The monitor lists nothing and stats only a name just created, to tell a
regular file (held until it is closed after writing, ``creates.py``) from
a symlink or a node (told at once).  It says *where* to look
(``sink.dirty``), forwards renames it saw whole (``sink.moved``), and says
when it lost track (``sink.overflow``); the scanner reconciles those paths
against the snapshot.  Every way the kernel can lose information ends in a
dirty path or an overflow, never in silence: a queue overflow, a watch the
kernel would not give us (the directory is then *polled*), a rename whose
other half never came.

Excluded paths are never watched nor reported.  Since exclusions are by
path, a rename can change which paths below the moved directory are
excluded; when ``has_excluded_below`` says an exclusion lies below the source
or the destination, the rename is reported as a delete plus a recursive
create instead of a move.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from twisted.logger import Logger

from fs_sync.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    RawEvent,
)
from mirrord.creates import CreateWait
from mirrord.events import MoveOutcome, MovePairer, Paired, UnpairedFrom
from mirrord.kernel import WATCH_MASK, Inotify, PathGone, WatchLimitReached
from mirrord.paths import is_below, join
from mirrord.polled import PolledRoots
from mirrord.seams import Clock, DelayedCall
from mirrord.watches import WatchTree


class Sink(Protocol):
    """What the monitor calls.  ``watch_limit(path, message)`` is optional: when
    the sink lacks it, the warning is only logged."""

    def dirty(
        self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
    ) -> None: ...
    def moved(self, src: bytes, dst: bytes) -> None: ...
    def overflow(self) -> None: ...
    def watch_limit(self, path: bytes, message: str) -> None: ...


CREATE_WAIT = 0.5  # longest a new regular file waits for its close before it is told


def _regular_file(path: bytes) -> bool:
    """Is ``path`` a regular file now? (Gone or unreadable: no, tell it as it is.)"""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _may_move_or_lose(event: RawEvent) -> bool:
    """Not a file's create, write, attribute change or delete: a rename, a directory
    going, an overflow: an event after which a held path may no longer be where it was."""
    mask = event.mask
    if mask & (IN_CREATE | IN_CLOSE_WRITE | IN_ATTRIB):
        return False
    return not (mask & IN_DELETE and not mask & IN_ISDIR and event.name)


def _limbo(wd: int) -> bytes:
    """Where a directory's watch waits for the other half of its rename: no path."""
    return b"moving:%d" % wd


@dataclass(frozen=True, slots=True)
class _Half:
    """One side of a rename, with its path resolved when the event arrived.

    The path is the one the sink has been told of (the journal's story): a
    directory above a FROM half that is renamed while the half waits for its
    partner moves the half's path too (:meth:`Monitor._follow`), else a move
    out of the tree would be reported at a path the snapshot has left, and
    delete nothing. A watch re-placed by ``watch()`` (a walk that ran ahead of
    the events) does not move it: the rename is still to be told in order.
    """

    cookie: int
    mask: int
    path: bytes
    wd: int | None  # the moved directory's own watch (FROM side), if any


class Monitor:
    """Raw events in, sink calls out; owns the watches and the polled set."""

    def __init__(
        self,
        inotify: Inotify,
        is_included: Callable[[bytes], bool],
        sink: Sink,
        reactor: Clock,
        move_wait: float = 0.1,
        log: Logger | None = None,
        has_excluded_below: Callable[[bytes], bool] | None = None,
        max_polled: int = 10_000,
        max_pending_moves: int = 10_000,
        create_wait: float = CREATE_WAIT,
    ) -> None:
        self.inotify = inotify
        self.is_included = is_included
        self.sink = sink
        self.reactor = reactor
        self.log = log if log is not None else Logger()
        self.has_excluded_below = has_excluded_below or (lambda path: False)
        self.tree = WatchTree()
        self._polled = PolledRoots(max_polled, self.log)
        self.max_pending_moves = max_pending_moves
        self._pairer: MovePairer[_Half] = MovePairer(move_wait, max_pending_moves)
        self._creating = CreateWait(create_wait, max_pending_moves)
        # wds of directories with rename halves pending, and how many: one moved out
        # and back in, then out again, waits twice. A half that runs out drops the
        # watch only when it is the last one and the watch is still in limbo: met
        # again by watch() or placed by a later rename, it lives on where it is now
        self._moving: dict[int, int] = {}
        self._timer: DelayedCall | None = None
        self.overflows = 0  # IN_Q_OVERFLOWs since start, for -k status

    # -- watches, called by the scanner ------------------------------------

    def watch(self, dir_path: bytes) -> bool:
        """Watch ``dir_path`` before it is listed.  False: the watch limit is reached.

        After False the directory is covered by polling: it is recorded as a
        polled root unless an ancestor already is.  True also covers a
        directory that needs no watch (excluded) or has just vanished.  A
        directory we may not read raises :class:`PathUnreadable` (a
        ``PermissionError``): the scanner stores it as unreadable, and the
        IN_ATTRIB its parent sees when it is made readable brings it back.
        """
        if not self.is_included(dir_path):
            return True
        try:
            wd = self.inotify.add_watch(dir_path, WATCH_MASK)
        except PathGone:
            return True
        except WatchLimitReached as e:
            self._add_polled(dir_path, str(e))
            return False
        # a directory that a pending "moved away" is about, met again in the tree
        # (moved out and back in before the move-wait ran out), leaves limbo here:
        # the watch it still needs is not dropped with its old path
        self.tree.add(wd, dir_path)
        if dir_path in self._polled:
            # watched now, but not what is below it: one walk watches (or polls) that
            self._polled.discard(dir_path)
            self.sink.dirty(dir_path, recursive=True)
        return True

    def unwatch_tree(self, path: bytes) -> None:
        """Stop watching ``path`` and everything below it; forget polled roots there."""
        self._drop_watches(self.tree.remove_tree(path))
        self._polled.drop_below(path)

    def polled_roots(self) -> list[bytes]:
        """The sub-trees the scanner has to poll (bounded by ``max_polled``)."""
        return self._polled.sorted()

    def status(self) -> dict[str, int | bool]:
        """``watched``: directories with a watch; ``polled``: polled sub-tree roots;
        ``polled_full``: the polled set hit its bound; ``pending_moves``: renames
        waiting for their other half; ``overflows``: event queue overflows since start."""
        return {
            "watched": len(self.tree),
            "polled": len(self._polled),
            "polled_full": self._polled.full,
            "pending_moves": len(self._pairer),
            "overflows": self.overflows,
        }

    def _drop_watches(self, wds: Iterable[int]) -> None:
        for wd in wds:
            try:
                self.inotify.rm_watch(wd)
            except OSError as e:
                self.log.warn("inotify: rm_watch {wd} failed: {error}", wd=wd, error=e)

    def _add_polled(self, path: bytes, message: str) -> None:
        if self._polled.add(path, message):
            report = getattr(self.sink, "watch_limit", None)  # optional on the sink
            if report is not None:
                report(path, message)

    # -- events --------------------------------------------------------------

    def handle(self, events: Iterable[RawEvent]) -> None:
        """Process events in kernel order (the InotifyReader's callback).

        An event whose handling fails is not lost: it is logged (one line)
        and the directory it came from is marked dirty with everything below
        it, or, when that is not known, the whole tree is rechecked.
        """
        now = self.reactor.seconds()
        for event in events:
            try:
                self._one(event, now)
            except Exception as e:
                self._failed(event, e)
        self._arm()

    def _failed(self, event: RawEvent, error: Exception) -> None:
        base = self.tree.path_of(event.wd) if event.wd >= 0 else None
        where = base.decode(errors="replace") if base is not None else "?"
        self.log.error(
            "inotify: handling event {mask:#x} in {where} failed ({error!r}); rescanning it",
            mask=event.mask,
            where=where,
            error=error,
        )
        if base is not None and base.startswith(b"/"):
            try:
                self.sink.dirty(base, recursive=True)
                return
            except Exception as e:
                self.log.error(
                    "inotify: marking {where} dirty failed ({error!r})", where=where, error=e
                )
        self.sink.overflow()  # an exception from here reaches the reader, which rescans

    def _one(self, event: RawEvent, now: float) -> None:
        mask = event.mask
        if self._creating and _may_move_or_lose(event):
            # what was created before it is told before it, so the journal sees each
            # path where it was made
            self._tell_created(self._creating.drain())
        if event.wd == -1:
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                self.log.warn(
                    "inotify: event queue overflowed; rescanning every tree for what it lost"
                )
                self.sink.overflow()
            return
        tree = self.tree
        if mask & IN_IGNORED:
            tree.remove(event.wd)
            self._moving.pop(event.wd, None)
            return
        base = tree.path_of(event.wd)
        if base is None:
            self.log.debug("inotify: event {mask:#x} for unknown wd {wd}", mask=mask, wd=event.wd)
            return
        if not base.startswith(b"/"):  # inside a directory in the middle of a rename
            return
        if not event.name:
            self._self_event(event, base)
            return
        path = join(base, event.name)
        if mask & (IN_MOVED_FROM | IN_MOVED_TO):
            wd = tree.wd_of(path) if mask & IN_MOVED_FROM and mask & IN_ISDIR else None
            if wd is not None:
                # Until its other half comes, the directory is nowhere: a new
                # directory made at the old path must not be attached below it.
                tree.move_wd(wd, _limbo(wd))
                if wd in self._moving or len(self._moving) < self.max_pending_moves:
                    self._moving[wd] = self._moving.get(wd, 0) + 1
            for outcome in self._pairer.feed(_Half(event.cookie, mask, path, wd), now):
                self._move(outcome)
            return
        if not self.is_included(path):
            return
        # ``present``: the event says the path exists; gone by the time the
        # journal looks, a rename of it or of a parent is still to be told.
        if mask & IN_CREATE:
            if not mask & IN_ISDIR and _regular_file(path):  # told at its close
                self._tell_created(self._creating.hold(path, now))
            else:
                self.sink.dirty(path, recursive=bool(mask & IN_ISDIR), present=True)
        elif mask & IN_CLOSE_WRITE:
            # Written and closed: content changed even when size and mtime look
            # the same (two writes within one timestamp tick).
            self._creating.release(path)
            self.sink.dirty(path, written=True, present=True)
        elif mask & IN_ATTRIB:
            if path not in self._creating:  # a new file's mode or times: told at its close
                self.sink.dirty(path, present=True)
        elif mask & IN_DELETE:
            self._creating.release(path)
            self.sink.dirty(path)

    def _tell_created(self, paths: list[bytes]) -> None:
        for path in paths:
            self.sink.dirty(path, present=True)

    def _self_event(self, event: RawEvent, base: bytes) -> None:
        """An event on a watched directory itself: only roots need it (parents see the rest)."""
        mask = event.mask
        is_root = self.tree.is_root(event.wd)
        if mask & IN_DELETE_SELF:
            self.tree.remove(event.wd)
            if is_root:
                self.sink.dirty(base)
        elif mask & (IN_MOVE_SELF | IN_UNMOUNT):
            if is_root or mask & IN_UNMOUNT:
                self.unwatch_tree(base)
                self.sink.dirty(base, recursive=True)
        elif mask & IN_ATTRIB and is_root:
            self.sink.dirty(base)

    def _move(self, outcome: MoveOutcome[_Half]) -> None:
        try:
            self._move_outcome(outcome)
        finally:
            half = outcome.src if isinstance(outcome, Paired) else outcome.event
            if half.wd is not None and self._last_half(half.wd) and self._in_limbo(half.wd):
                self._drop_watches(self.tree.remove_subtree(half.wd))  # nobody claimed it

    def _in_limbo(self, wd: int) -> bool:
        """``wd`` still waits where its last "moved away" put it: no path claimed it."""
        return self.tree.path_of(wd) == _limbo(wd)

    def _last_half(self, wd: int) -> bool:
        """One pending rename half of ``wd`` is done with: was it the last one?"""
        n = self._moving.pop(wd, 0)
        if n > 1:
            self._moving[wd] = n - 1
            return False
        return True

    def _move_outcome(self, outcome: MoveOutcome[_Half]) -> None:
        if isinstance(outcome, Paired):
            src, dst = outcome.src.path, outcome.dst.path
            src_in, dst_in = self.is_included(src), self.is_included(dst)
            isdir = bool(outcome.src.mask & IN_ISDIR)
            if src_in and dst_in and isdir:
                if self.has_excluded_below(src) or self.has_excluded_below(dst):
                    self._gone(outcome.src)
                    self.sink.dirty(dst, recursive=True)
                    return
                if outcome.src.wd is not None and outcome.src.wd in self.tree:
                    self.tree.move_wd(outcome.src.wd, dst)
                self._polled.move(src, dst)
                self.sink.moved(src, dst)
                self._follow(src, dst)
            elif src_in and dst_in:
                self.sink.moved(src, dst)
            elif dst_in:
                self.sink.dirty(dst, recursive=True)
            elif src_in:
                self._gone(outcome.src)
        elif isinstance(outcome, UnpairedFrom):
            if self.is_included(outcome.event.path):
                self._gone(outcome.event)
        elif self.is_included(outcome.event.path):
            self.sink.dirty(outcome.event.path, recursive=True)

    def _follow(self, src: bytes, dst: bytes) -> None:
        """The sink was told ``src`` is now ``dst``: move the waiting halves below it."""
        if not len(self._pairer):
            return

        def moved(half: _Half) -> _Half:
            if not is_below(half.path, src):
                return half
            return replace(half, path=dst + half.path[len(src) :])

        self._pairer.update_held(moved)

    def _gone(self, half: _Half) -> None:
        """``half.path`` left the tree: drop the watches that went with it.

        Unless its watch has left limbo in the meantime: watched again by a walk
        (moved out and back in, or into a directory whose events we did not get
        yet, before the move-wait ran out) or placed by a later rename seen whole;
        that watch lives on where it is now. Or unless the directory was moved
        away again since (another half of it is pending): that one decides.
        """
        wd = half.wd
        if wd is not None and self._moving.get(wd, 0) <= 1 and self._in_limbo(wd):
            self._drop_watches(self.tree.remove_subtree(wd))
        self._polled.drop_below(half.path)
        self.sink.dirty(half.path)

    # -- the move-wait timer -------------------------------------------------

    def _arm(self) -> None:
        due = [self._pairer.next_deadline(), self._creating.next_deadline()]
        deadline = min((d for d in due if d is not None), default=None)
        timer = self._timer
        if deadline is None:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        delay = max(0.0, deadline - self.reactor.seconds())
        if timer is not None and timer.active():
            if timer.getTime() != deadline:
                timer.reset(delay)
            return
        self._timer = self.reactor.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._tell_created(self._creating.expire(self.reactor.seconds()))
        for outcome in self._pairer.expire(self.reactor.seconds()):
            self._move(outcome)
        self._arm()

    def stop(self) -> None:
        """Cancel the timer (service shutdown; the next boot's walk finds the files held)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
