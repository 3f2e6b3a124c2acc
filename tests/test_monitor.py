"""Tests for mirrord.monitor with the real kernel inotify and a recording sink."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

from fs_sync.inotify import (
    IN_CREATE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    RawEvent,
)
from mirrord.kernel import Inotify, InotifyReader, read_limits
from mirrord.monitor import Monitor
from mirrord.watches import is_below

MOVE_WAIT = 0.1


class RecordingSink:
    """Collects the monitor's calls; on a recursive dirty it watches the new
    directories top-down the way the scanner does (watch before listing)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.monitor: Monitor | None = None

    def dirty(
        self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
    ) -> None:
        self.calls.append(("dirty", path, recursive))
        if recursive and self.monitor is not None and os.path.isdir(path):
            self.watch_tree(path)

    def watch_tree(self, top: bytes) -> None:
        assert self.monitor is not None
        stack = [top]
        while stack:
            path = stack.pop()
            if not self.monitor.is_included(path) or not self.monitor.watch(path):
                continue
            with os.scandir(path) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))

    def moved(self, src: bytes, dst: bytes) -> None:
        self.calls.append(("moved", src, dst))

    def overflow(self) -> None:
        self.calls.append(("overflow",))

    def watch_limit(self, path: bytes, message: str) -> None:
        self.calls.append(("watch_limit", path))


class Rig:
    """A monitor on tmp_path/tree (tmp_path/tree/excl excluded), driven synchronously."""

    def __init__(
        self,
        tmp_path: Path,
        inotify: Inotify,
        has_excluded_below: Callable[[bytes], bool] | None = None,
        log: Logger | None = None,
    ) -> None:
        self.top = os.fsencode(tmp_path)
        self.root = self.top + b"/tree"
        self.outside = self.top + b"/out"
        self.excluded = self.root + b"/excl"
        os.mkdir(self.root)
        os.mkdir(self.outside)
        self.clock = MemoryReactorClock()
        self.sink = RecordingSink()
        self.inotify = inotify
        self.monitor = Monitor(
            inotify,
            self.included,
            self.sink,
            self.clock,
            move_wait=MOVE_WAIT,
            log=log,
            has_excluded_below=has_excluded_below,
        )
        self.sink.monitor = self.monitor
        self.reader = InotifyReader(inotify, self.monitor.handle, self.clock)
        self.sink.watch_tree(self.root)

    def included(self, path: bytes) -> bool:
        return is_below(path, self.root) and not is_below(path, self.excluded)

    def p(self, rel: str) -> bytes:
        return self.root + b"/" + rel.encode()

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait on the fd (with a deadline) and run doRead until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; calls so far: {self.sink.calls}"
            if select.select([self.reader], [], [], remaining)[0]:
                self.reader.doRead()

    def called(self, *call: object) -> Callable[[], bool]:
        return lambda: call in self.sink.calls

    def sentinel(self) -> None:
        """Write a marker file and pump until it is reported: everything before is in."""
        marker = self.p(f"sentinel-{len(self.sink.calls)}")
        with open(marker, "wb"):
            pass
        self.pump(self.called("dirty", marker, False))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    inotify = Inotify()
    try:
        yield Rig(tmp_path, inotify)
    finally:
        inotify.close()


def test_mkdir_p_then_files(rig: Rig) -> None:
    """mkdir -p a/b/c reports a recursively; files then written deep inside are reported."""
    os.makedirs(rig.p("a/b/c"))
    rig.pump(rig.called("dirty", rig.p("a"), True))
    assert rig.monitor.status()["watched"] == 4
    with open(rig.p("a/b/c/f"), "wb") as f:
        f.write(b"x")
    rig.pump(rig.called("dirty", rig.p("a/b/c/f"), False))
    os.unlink(rig.p("a/b/c/f"))
    os.chmod(rig.p("a/b"), 0o700)
    rig.pump(rig.called("dirty", rig.p("a/b"), False))
    assert ("dirty", rig.p("a/b/c/f"), False) in rig.sink.calls


def test_move_inside_tree_is_one_moved_call(rig: Rig) -> None:
    """mv of a watched directory inside the tree is one moved(); later events use the new path."""
    os.makedirs(rig.p("d1/sub"))
    rig.pump(rig.called("dirty", rig.p("d1"), True))
    watched = rig.monitor.status()["watched"]
    start = len(rig.sink.calls)
    os.rename(rig.p("d1"), rig.p("d2"))
    rig.pump(rig.called("moved", rig.p("d1"), rig.p("d2")))
    with open(rig.p("d2/sub/new"), "wb"):
        pass
    rig.pump(rig.called("dirty", rig.p("d2/sub/new"), False))
    later = rig.sink.calls[start:]
    assert [c for c in later if c[0] == "moved"] == [("moved", rig.p("d1"), rig.p("d2"))]
    assert not any(c[1].startswith(rig.p("d1")) for c in later if c[0] == "dirty")
    assert rig.monitor.status()["watched"] == watched
    assert rig.monitor.status()["pending_moves"] == 0


def test_file_rename_is_moved(rig: Rig) -> None:
    """Renaming a file inside the tree is reported as moved(src, dst)."""
    with open(rig.p("f"), "wb"):
        pass
    os.rename(rig.p("f"), rig.p("g"))
    rig.pump(rig.called("moved", rig.p("f"), rig.p("g")))


def test_move_out_of_tree_is_dirty_after_wait(rig: Rig) -> None:
    """mv out of the tree: after move_wait, dirty(src) and the watches below are dropped."""
    os.makedirs(rig.p("gone/x"))
    rig.pump(rig.called("dirty", rig.p("gone"), True))
    assert rig.monitor.status()["watched"] == 3
    os.rename(rig.p("gone"), rig.outside + b"/gone")
    rig.pump(lambda: rig.monitor.status()["pending_moves"] == 1)
    assert ("dirty", rig.p("gone"), False) not in rig.sink.calls
    rig.clock.advance(MOVE_WAIT)
    assert ("dirty", rig.p("gone"), False) in rig.sink.calls
    assert rig.monitor.status()["watched"] == 1
    assert rig.monitor.status()["pending_moves"] == 0
    with open(rig.outside + b"/gone/x/later", "wb"):
        pass
    rig.sentinel()
    assert not any(b"later" in c[1] for c in rig.sink.calls if len(c) > 1)


def test_move_in_from_outside_is_recursive_dirty(rig: Rig) -> None:
    """mv from outside into the tree is dirty(dst, recursive=True) at once."""
    os.makedirs(rig.outside + b"/incoming/deep")
    os.rename(rig.outside + b"/incoming", rig.p("incoming"))
    rig.pump(rig.called("dirty", rig.p("incoming"), True))
    assert rig.monitor.tree.wd_of(rig.p("incoming/deep")) is not None


def test_excluded_paths_never_watched_nor_reported(rig: Rig) -> None:
    """Creating and filling an excluded directory reports nothing and adds no watch."""
    os.mkdir(rig.excluded)
    with open(rig.excluded + b"/f", "wb"):
        pass
    rig.sentinel()
    assert not any(is_below(c[1], rig.excluded) for c in rig.sink.calls if len(c) > 1)
    assert rig.monitor.status()["watched"] == 1
    assert rig.monitor.watch(rig.excluded)
    assert rig.monitor.tree.wd_of(rig.excluded) is None


def test_moves_across_the_exclusion_boundary(rig: Rig) -> None:
    """Included -> excluded is a dirty source plus unwatching; excluded -> included a create."""
    os.makedirs(rig.p("keep/inner"))
    rig.pump(rig.called("dirty", rig.p("keep"), True))
    os.rename(rig.p("keep"), rig.excluded)
    rig.pump(rig.called("dirty", rig.p("keep"), False))
    assert rig.monitor.status()["watched"] == 1
    os.rename(rig.excluded, rig.p("back"))
    rig.pump(rig.called("dirty", rig.p("back"), True))
    assert rig.monitor.tree.wd_of(rig.p("back/inner")) is not None
    assert not any(c[0] == "moved" for c in rig.sink.calls)


def test_watch_limit_records_polled_root(tmp_path: Path) -> None:
    """Past the watch cap, watch() is False, the directory is a polled root, and it is said."""
    inotify = Inotify(max_watches=2)
    try:
        rig = Rig(tmp_path, inotify)
        os.makedirs(rig.p("a"))
        os.makedirs(rig.p("b/c"))
        assert rig.monitor.watch(rig.p("a"))
        assert not rig.monitor.watch(rig.p("b"))
        assert not rig.monitor.watch(rig.p("b/c"))
        assert rig.monitor.polled_roots() == [rig.p("b")]
        assert [c for c in rig.sink.calls if c[0] == "watch_limit"] == [("watch_limit", rig.p("b"))]
        status = rig.monitor.status()
        assert (status["watched"], status["polled"]) == (2, 1)
        os.rename(rig.p("b"), rig.p("b2"))  # a polled root follows an in-tree move
        rig.pump(rig.called("moved", rig.p("b"), rig.p("b2")))
        assert rig.monitor.polled_roots() == [rig.p("b2")]
        os.rmdir(rig.p("a"))  # frees a watch once IN_IGNORED is read
        rig.pump(lambda: rig.monitor.status()["watched"] == 1)
        assert rig.monitor.watch(rig.p("b2"))
        # watched now, but b2/c is not: b2 is walked again, and c is past the cap
        assert ("dirty", rig.p("b2"), True) in rig.sink.calls
        assert rig.monitor.polled_roots() == [rig.p("b2/c")]
    finally:
        inotify.close()


def test_unknown_wd_is_ignored_quietly(rig: Rig) -> None:
    """Events for a wd that is no longer known produce no call."""
    rig.monitor.handle([RawEvent(12345, IN_CREATE, 0, b"ghost")])
    assert rig.sink.calls == []


def test_queue_overflow_calls_overflow(tmp_path: Path) -> None:
    """More events than max_queued_events without reading ends in sink.overflow()."""
    limit = read_limits().max_queued_events
    proc = "/proc/sys/fs/inotify/max_queued_events"
    lowered = limit > 200_000
    if lowered:
        with open(proc, "w") as f:
            f.write("16384")
    try:
        inotify = Inotify()
    finally:
        if lowered:
            with open(proc, "w") as f:
                f.write(str(limit))
    try:
        rig = Rig(tmp_path, inotify)
        queued = read_limits().max_queued_events if not lowered else 16384
        files = [rig.p("one"), rig.p("two")]
        for f in files:
            with open(f, "wb"):
                pass
        for i in range(queued // 2 + 100):  # alternate so the kernel cannot merge them
            os.utime(files[0], (i, i))
            os.utime(files[1], (i, i))
        rig.pump(rig.called("overflow"), timeout=20)
        assert rig.sink.calls.count(("overflow",)) == 1
    finally:
        inotify.close()


def test_move_wait_is_one_rescheduled_timer(rig: Rig) -> None:
    """Two moves out of the tree share one timer; each expires at its own deadline."""
    for name in ("m1", "m2"):
        os.mkdir(rig.p(name))
        rig.monitor.watch(rig.p(name))
    os.rename(rig.p("m1"), rig.outside + b"/m1")
    rig.pump(lambda: rig.monitor.status()["pending_moves"] == 1)
    rig.clock.advance(MOVE_WAIT / 2)
    os.rename(rig.p("m2"), rig.outside + b"/m2")
    rig.pump(lambda: rig.monitor.status()["pending_moves"] == 2)
    assert len(rig.clock.getDelayedCalls()) == 1
    rig.clock.advance(MOVE_WAIT / 2)
    assert ("dirty", rig.p("m1"), False) in rig.sink.calls
    assert ("dirty", rig.p("m2"), False) not in rig.sink.calls
    assert len(rig.clock.getDelayedCalls()) == 1
    rig.clock.advance(MOVE_WAIT / 2)
    assert ("dirty", rig.p("m2"), False) in rig.sink.calls
    assert rig.clock.getDelayedCalls() == []


def test_move_with_exclusion_below_is_delete_and_create(tmp_path: Path) -> None:
    """A renamed directory with an exclusion below it is reported as delete + recursive create."""
    inotify = Inotify()
    try:
        rig = Rig(tmp_path, inotify, has_excluded_below=lambda p: p.endswith(b"/special"))
        os.makedirs(rig.p("special/inner"))
        rig.pump(rig.called("dirty", rig.p("special"), True))
        os.rename(rig.p("special"), rig.p("plain"))
        rig.pump(rig.called("dirty", rig.p("plain"), True))
        assert ("dirty", rig.p("special"), False) in rig.sink.calls
        assert not any(c[0] == "moved" for c in rig.sink.calls)
        assert rig.monitor.tree.wd_of(rig.p("special/inner")) is None
        assert rig.monitor.tree.wd_of(rig.p("plain/inner")) is not None
    finally:
        inotify.close()


def test_overflow_event_is_logged_and_reported(tmp_path: Path) -> None:
    """IN_Q_OVERFLOW (wd -1) is never silent: a warning is logged and overflow() called."""
    logged: list[dict] = []
    inotify = Inotify()
    try:
        rig = Rig(tmp_path, inotify, log=Logger(observer=logged.append))
        rig.monitor.handle([RawEvent(-1, IN_Q_OVERFLOW, 0, b"")])
        assert rig.sink.calls == [("overflow",)]
        assert [e["log_level"].name for e in logged] == ["warn"]
        assert "overflow" in e_text(logged[0])
    finally:
        inotify.close()


def e_text(event: dict) -> str:
    return event["log_format"].format(**event)


def test_root_deleted_is_dirty(rig: Rig) -> None:
    """Removing the watched root reports it dirty and leaves no watch."""
    os.rmdir(rig.root)
    rig.pump(rig.called("dirty", rig.root, False))
    rig.pump(lambda: rig.monitor.status()["watched"] == 0)


def test_root_moved_away_is_dirty_and_unwatched(rig: Rig) -> None:
    """Moving the root itself away reports it dirty recursively and drops its watches."""
    os.makedirs(rig.p("k"))
    rig.monitor.watch(rig.p("k"))
    os.rename(rig.root, rig.outside + b"/moved-root")
    rig.pump(rig.called("dirty", rig.root, True))
    assert rig.monitor.status()["watched"] == 0


def test_polled_set_is_bounded(tmp_path: Path) -> None:
    """Past max_polled roots, further ones are not recorded and status says so."""
    inotify = Inotify(max_watches=1)
    try:
        sink = RecordingSink()
        top = os.fsencode(tmp_path)
        logged: list[dict] = []
        monitor = Monitor(
            inotify,
            lambda p: True,
            sink,
            MemoryReactorClock(),
            log=Logger(observer=logged.append),
            max_polled=1,
        )
        for name in (b"a", b"b"):
            os.mkdir(top + b"/" + name)
        assert monitor.watch(top)
        assert not monitor.watch(top + b"/a")
        assert not monitor.watch(top + b"/b")
        assert monitor.polled_roots() == [top + b"/a"]
        assert monitor.status()["polled_full"]
        assert [e["log_level"].name for e in logged] == ["warn", "error"]
        monitor.unwatch_tree(top)
        assert monitor.status() == {
            "watched": 0,
            "polled": 0,
            "polled_full": False,
            "pending_moves": 0,
            "overflows": 0,
        }
    finally:
        inotify.close()


def test_sink_without_watch_limit_method(tmp_path: Path) -> None:
    """A sink without the optional watch_limit() still gets the directory polled."""

    class MinimalSink:
        """Only the required sink calls."""

        def dirty(
            self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
        ) -> None:
            pass

        def moved(self, src: bytes, dst: bytes) -> None:
            pass

        def overflow(self) -> None:
            pass

    inotify = Inotify(max_watches=0)
    try:
        logged: list[dict] = []
        monitor = Monitor(
            inotify,
            lambda p: True,
            MinimalSink(),
            MemoryReactorClock(),
            log=Logger(observer=logged.append),
        )
        assert not monitor.watch(os.fsencode(tmp_path))
        assert monitor.polled_roots() == [os.fsencode(tmp_path)]
        assert "watch.max" in logged[0]["message"]
    finally:
        inotify.close()


def test_new_directory_at_a_moved_away_path_keeps_its_watches(rig: Rig) -> None:
    """A tree made where a directory was moved out is watched apart from the old one."""
    os.makedirs(rig.p("b/c"))
    rig.sink.watch_tree(rig.p("b"))
    os.rename(rig.p("b"), rig.outside + b"/gone")
    rig.pump(lambda: rig.monitor.status()["pending_moves"] == 1)
    os.makedirs(rig.p("b/c"))  # before the moved-out half expires
    assert rig.monitor.watch(rig.p("b/c"))  # a walk may reach c before b
    rig.pump(rig.called("dirty", rig.p("b"), True))
    rig.clock.advance(MOVE_WAIT)  # the old b leaves for good: its watches go
    rig.pump(rig.called("dirty", rig.p("b"), False))
    with open(rig.p("b/c/f"), "wb"):
        pass
    rig.pump(rig.called("dirty", rig.p("b/c/f"), False))


def test_directory_moved_out_and_back_keeps_its_watches(rig: Rig) -> None:
    """Moved out and back in before the move-wait ends: the watch met again is kept."""
    os.makedirs(rig.p("d/sub"))
    rig.sink.watch_tree(rig.p("d"))
    os.rename(rig.p("d"), rig.outside + b"/d")
    os.rename(rig.outside + b"/d", rig.p("back"))
    rig.pump(rig.called("dirty", rig.p("back"), True))
    rig.clock.advance(MOVE_WAIT)
    rig.pump(rig.called("dirty", rig.p("d"), False))
    with open(rig.p("back/sub/f"), "wb"):
        pass
    rig.pump(rig.called("dirty", rig.p("back/sub/f"), False))


class FailingSink(RecordingSink):
    """A sink whose first ``dirty`` raises, as a handler with a bug would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 1

    def dirty(
        self, path: bytes, recursive: bool = False, written: bool = False, present: bool = False
    ) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("handler bug")
        super().dirty(path, recursive, written)


def test_failing_handler_marks_the_watched_directory_dirty(tmp_path: Path) -> None:
    """An event whose handling raises is logged in one line and its watched directory
    is marked dirty with everything below it; later events are handled as usual."""
    ino = Inotify()
    logged: list[dict] = []
    sink = FailingSink()
    root = os.fsencode(tmp_path)
    try:
        mon = Monitor(
            ino, lambda p: True, sink, MemoryReactorClock(), log=Logger(observer=logged.append)
        )
        wd = ino.add_watch(root)
        mon.tree.add(wd, root)
        mon.handle([RawEvent(wd, IN_CREATE, 0, b"a"), RawEvent(wd, IN_CREATE, 0, b"b")])
        assert sink.calls == [("dirty", root, True), ("dirty", root + b"/b", False)]
        assert len(logged) == 1 and "log_failure" not in logged[0]
        mon.handle([RawEvent(99, IN_CREATE, 0, b"x")])  # unknown wd: only a debug line
        sink.fail = 1
        mon._failed(RawEvent(99, IN_CREATE, 0, b"x"), RuntimeError("x"))  # where unknown
        assert sink.calls[-1] == ("overflow",)
    finally:
        ino.close()


def test_unreadable_directory_raises_for_the_scanner(tmp_path: Path) -> None:
    """watch() of a directory we may not read raises PermissionError and watches nothing."""
    from tests.test_kernel import RefusingWrapper

    ino = Inotify(wrapper=RefusingWrapper(13))
    try:
        mon = Monitor(ino, lambda p: True, RecordingSink(), MemoryReactorClock())
        with pytest.raises(PermissionError):
            mon.watch(os.fsencode(tmp_path))
        assert mon.status()["watched"] == 0 and mon.status()["polled"] == 0
    finally:
        ino.close()


def test_moved_out_below_a_directory_renamed_during_the_wait(rig: Rig) -> None:
    """A directory moved out of the tree is reported at the path it had when the
    move-wait ran out: a rename of one of its ancestors meanwhile is followed."""
    os.makedirs(rig.p("a/b/c/d"))
    rig.sink.watch_tree(rig.p("a"))
    os.rename(rig.p("a/b/c"), rig.outside + b"/c")  # out: waits for a partner
    os.rename(rig.p("a"), rig.p("z"))  # an ancestor renamed within the wait
    rig.pump(rig.called("moved", rig.p("a"), rig.p("z")))
    rig.clock.advance(MOVE_WAIT)
    assert ("dirty", rig.p("z/b/c"), False) in rig.sink.calls
    assert ("dirty", rig.p("a/b/c"), False) not in rig.sink.calls
    assert rig.monitor.tree.wd_of(rig.p("z/b")) is not None
    assert rig.monitor.status()["watched"] == 3  # tree, z, z/b: c and d went with c
    with open(rig.p("z/b/f"), "wb"):
        pass
    rig.pump(rig.called("dirty", rig.p("z/b/f"), False))


def test_late_partner_below_a_renamed_directory_pairs_at_the_new_path(rig: Rig) -> None:
    """A rename whose TO half comes late (a read boundary) after the directory it
    left was itself renamed is one moved() from the source's new path."""
    os.makedirs(rig.p("p/c"))
    rig.sink.watch_tree(rig.p("p"))
    top, wd_p = rig.monitor.tree.wd_of(rig.root), rig.monitor.tree.wd_of(rig.p("p"))
    assert top is not None and wd_p is not None
    rig.monitor.handle([RawEvent(wd_p, IN_MOVED_FROM | IN_ISDIR, 7, b"c")])
    rig.monitor.handle(
        [
            RawEvent(top, IN_MOVED_FROM | IN_ISDIR, 8, b"p"),
            RawEvent(top, IN_MOVED_TO | IN_ISDIR, 8, b"q"),
        ]
    )
    rig.monitor.handle([RawEvent(top, IN_MOVED_TO | IN_ISDIR, 7, b"c2")])
    assert rig.sink.calls[-2:] == [
        ("moved", rig.p("p"), rig.p("q")),
        ("moved", rig.p("q/c"), rig.p("c2")),
    ]
    assert rig.monitor.tree.wd_of(rig.p("c2")) is not None
    assert rig.monitor.status()["pending_moves"] == 0


def test_moved_out_from_a_directory_mid_rename_is_told_before_that_rename(rig: Rig) -> None:
    """A move out whose wait ends while the directory it left waits for its own
    partner is reported at the path the sink knows, before that rename is told."""
    os.makedirs(rig.p("p/c"))
    rig.sink.watch_tree(rig.p("p"))
    top, wd_p = rig.monitor.tree.wd_of(rig.root), rig.monitor.tree.wd_of(rig.p("p"))
    assert top is not None and wd_p is not None
    rig.monitor.handle([RawEvent(wd_p, IN_MOVED_FROM | IN_ISDIR, 7, b"c")])
    rig.clock.advance(MOVE_WAIT / 2)
    rig.monitor.handle([RawEvent(top, IN_MOVED_FROM | IN_ISDIR, 8, b"p")])  # TO not read yet
    rig.clock.advance(MOVE_WAIT / 2)
    rig.monitor.handle([RawEvent(top, IN_MOVED_TO | IN_ISDIR, 8, b"q")])
    assert rig.sink.calls[-2:] == [
        ("dirty", rig.p("p/c"), False),
        ("moved", rig.p("p"), rig.p("q")),
    ]
    assert rig.monitor.tree.wd_of(rig.p("q")) == wd_p
    assert rig.monitor.tree.wd_of(rig.p("q/c")) is None


def test_directory_moved_out_and_back_twice_keeps_its_watches(rig: Rig) -> None:
    """Moved out and back in twice before the first move-wait ends: the watch
    met again is kept when each of the two waits runs out, not only the first."""
    os.makedirs(rig.p("d/sub"))
    rig.sink.watch_tree(rig.p("d"))
    os.rename(rig.p("d"), rig.outside + b"/d")
    os.rename(rig.outside + b"/d", rig.p("d2"))
    rig.pump(rig.called("dirty", rig.p("d2"), True))
    rig.clock.advance(MOVE_WAIT / 2)
    os.rename(rig.p("d2"), rig.outside + b"/d2")
    os.rename(rig.outside + b"/d2", rig.p("d3"))
    rig.pump(rig.called("dirty", rig.p("d3"), True))
    rig.clock.advance(MOVE_WAIT / 2)
    assert ("dirty", rig.p("d"), False) in rig.sink.calls
    rig.clock.advance(MOVE_WAIT / 2)
    assert ("dirty", rig.p("d2"), False) in rig.sink.calls
    assert rig.monitor.status()["pending_moves"] == 0
    assert rig.monitor.tree.wd_of(rig.p("d3/sub")) is not None
    with open(rig.p("d3/sub/f"), "wb"):
        pass
    rig.sentinel()
    assert ("dirty", rig.p("d3/sub/f"), False) in rig.sink.calls


def test_directory_moved_into_an_unwalked_directory_then_renamed_keeps_its_watch(
    rig: Rig,
) -> None:
    """A directory moved into a directory not watched yet (its TO half unseen),
    met again by the walk there, then renamed twice while the first half still
    waits: when that half runs out, the watch, by then at its newest path, stays."""
    os.makedirs(rig.p("d/sub"))
    rig.sink.watch_tree(rig.p("d"))
    rig.sink.monitor = None  # the walk of p has not run yet
    os.mkdir(rig.p("p"))
    rig.pump(rig.called("dirty", rig.p("p"), True))
    rig.sink.monitor = rig.monitor
    os.mkdir(rig.p("q"))
    rig.pump(rig.called("dirty", rig.p("q"), True))
    os.rename(rig.p("d"), rig.p("p/d1"))  # IN_MOVED_TO in p: nobody hears it
    rig.pump(lambda: rig.monitor.status()["pending_moves"] == 1)
    rig.sink.watch_tree(rig.p("p"))  # the walk meets the directory again
    os.rename(rig.p("p/d1"), rig.p("p/d2"))
    rig.pump(rig.called("moved", rig.p("p/d1"), rig.p("p/d2")))
    os.rename(rig.p("p/d2"), rig.p("q/d3"))
    rig.pump(rig.called("moved", rig.p("p/d2"), rig.p("q/d3")))
    rig.clock.advance(MOVE_WAIT)
    assert ("dirty", rig.p("d"), False) in rig.sink.calls
    assert rig.monitor.status()["pending_moves"] == 0
    assert rig.monitor.tree.wd_of(rig.p("q/d3")) is not None
    assert rig.monitor.tree.wd_of(rig.p("q/d3/sub")) is not None
    with open(rig.p("q/d3/sub/f"), "wb"):
        pass
    os.symlink(b"nowhere", rig.p("q/d3/l"))
    rig.sentinel()
    assert ("dirty", rig.p("q/d3/sub/f"), False) in rig.sink.calls
    assert ("dirty", rig.p("q/d3/l"), False) in rig.sink.calls


def dirty_calls(rig: Rig, path: bytes) -> int:
    return sum(1 for c in rig.sink.calls if c[0] == "dirty" and c[1] == path)


def test_new_file_is_told_once_at_its_close(rig: Rig) -> None:
    """A file created, written and closed is one dirty (at IN_CLOSE_WRITE), not one at
    its IN_CREATE, when it is still empty, and another at its close."""
    path = rig.p("new")
    with open(path, "wb") as f:
        f.write(b"half")
        f.flush()
        rig.sentinel()  # the IN_CREATE has been read while the file is open
        assert dirty_calls(rig, path) == 0
        f.write(b" and the rest")
    rig.pump(rig.called("dirty", path, False))
    rig.sentinel()
    assert dirty_calls(rig, path) == 1
    assert len(rig.monitor._creating) == 0


def test_symlink_is_told_at_once_and_a_hard_link_after_the_wait(rig: Rig) -> None:
    """A symlink is never closed: told at its create. A hard link is a regular file that
    no one writes: held, then told when the create wait runs out."""
    os.symlink(b"target", rig.p("l"))
    rig.pump(rig.called("dirty", rig.p("l"), False))
    with open(rig.outside + b"/orig", "wb"):
        pass
    os.link(rig.outside + b"/orig", rig.p("hard"))
    rig.pump(lambda: rig.p("hard") in rig.monitor._creating)
    assert dirty_calls(rig, rig.p("hard")) == 0
    rig.clock.advance(0.5)
    assert dirty_calls(rig, rig.p("hard")) == 1


def test_file_held_open_is_told_before_its_directory_moves(rig: Rig) -> None:
    """A rename after a create: the held file is told first, at the path it was made."""
    os.mkdir(rig.p("d"))
    rig.pump(rig.called("dirty", rig.p("d"), True))
    with open(rig.p("d/f"), "wb") as f:
        rig.pump(lambda: rig.p("d/f") in rig.monitor._creating)
        os.rename(rig.p("d"), rig.p("e"))
        rig.pump(rig.called("moved", rig.p("d"), rig.p("e")))
        told = rig.sink.calls.index(("dirty", rig.p("d/f"), False))
        assert told < rig.sink.calls.index(("moved", rig.p("d"), rig.p("e")))
        f.write(b"x")
    rig.pump(rig.called("dirty", rig.p("e/f"), False))
