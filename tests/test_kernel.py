"""Tests for mirrord.kernel against the real kernel inotify."""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

from fs_sync import inotify as ev
from fs_sync.inotify import RawEvent, parse
from mirrord.kernel import (
    WATCH_MASK,
    Inotify,
    InotifyReader,
    Limits,
    PathGone,
    PathUnreadable,
    WatchLimitReached,
    check_limits,
    read_limits,
    suggested_watches,
)


@pytest.fixture
def inotify() -> Iterator[Inotify]:
    ino = Inotify()
    yield ino
    ino.close()


def collect(
    ino: Inotify, until: Callable[[list[RawEvent]], bool], timeout: float = 5.0
) -> list[RawEvent]:
    """Read and parse events until ``until(events)`` holds, waiting on the fd with a deadline."""
    got: list[RawEvent] = []
    tail = b""
    deadline = time.monotonic() + timeout
    while not until(got):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; events so far: {got}"
        readable, _, _ = select.select([ino.fileno()], [], [], remaining)
        if readable:
            events, tail = parse(tail + ino.read())
            got.extend(events)
    return got


def names(events: list[RawEvent], bit: int) -> list[bytes]:
    return [e.name for e in events if e.mask & bit]


def test_descriptor_is_nonblocking_and_cloexec(inotify: Inotify) -> None:
    """The fd never blocks a read and is not inherited by child processes."""
    assert not os.get_blocking(inotify.fileno())
    assert not os.get_inheritable(inotify.fileno())
    assert inotify.read() == b""


def test_file_operations_produce_events(inotify: Inotify, tmp_path: Path) -> None:
    """Create, write, rename, chmod and delete in a watched directory each show up."""
    wd = inotify.add_watch(os.fsencode(tmp_path))
    (tmp_path / "f").write_bytes(b"data")
    os.rename(tmp_path / "f", tmp_path / "g")
    os.chmod(tmp_path / "g", 0o600)
    (tmp_path / "sub").mkdir()
    os.unlink(tmp_path / "g")
    got = collect(inotify, lambda es: b"g" in names(es, ev.IN_DELETE))
    assert {e.wd for e in got} == {wd}
    assert names(got, ev.IN_CREATE) == [b"f", b"sub"]
    assert names(got, ev.IN_CLOSE_WRITE) == [b"f"]
    assert names(got, ev.IN_ATTRIB) == [b"g"]
    [src] = [e for e in got if e.mask & ev.IN_MOVED_FROM]
    [dst] = [e for e in got if e.mask & ev.IN_MOVED_TO]
    assert (src.name, dst.name) == (b"f", b"g")
    assert src.cookie == dst.cookie != 0
    [sub] = [e for e in got if e.name == b"sub"]
    assert sub.isdir
    assert not any(e.mask & ev.IN_MODIFY for e in got)


def test_non_utf8_directory_is_watched(inotify: Inotify, tmp_path: Path) -> None:
    """A directory whose name is not UTF-8 is watched by its raw bytes."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(raw)
    inotify.add_watch(raw)
    with open(raw + b"/\xff", "wb"):
        pass
    got = collect(inotify, lambda es: bool(names(es, ev.IN_CLOSE_WRITE)))
    assert names(got, ev.IN_CREATE) == [b"\xff"]


def test_same_directory_gives_same_wd(inotify: Inotify, tmp_path: Path) -> None:
    """Watching a directory twice returns the same wd (a rescan is idempotent)."""
    path = os.fsencode(tmp_path)
    assert inotify.add_watch(path) == inotify.add_watch(path)


def test_missing_or_non_directory_is_path_gone(inotify: Inotify, tmp_path: Path) -> None:
    """A vanished path, a file, or a symlink to a directory raise PathGone."""
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path)
    for name in ("missing", "file", "link"):
        with pytest.raises(PathGone):
            inotify.add_watch(os.fsencode(tmp_path / name))


def test_soft_cap_raises_watch_limit(tmp_path: Path) -> None:
    """Past max_watches, add_watch raises WatchLimitReached; a dropped wd frees a slot."""
    ino = Inotify(max_watches=2)
    try:
        paths = []
        for name in "abc":
            (tmp_path / name).mkdir()
            paths.append(os.fsencode(tmp_path / name))
        wd_a = ino.add_watch(paths[0])
        ino.add_watch(paths[1])
        with pytest.raises(WatchLimitReached, match="watch.max"):
            ino.add_watch(paths[2])
        ino.rm_watch(wd_a)
        ino.rm_watch(wd_a)  # already gone: EINVAL is ignored
        ino.add_watch(paths[2])
    finally:
        ino.close()


def test_kernel_watch_limit_message_names_sysctl() -> None:
    """ENOSPC from the kernel becomes WatchLimitReached naming fs.inotify.max_user_watches."""

    class FullKernel:
        """A syscall wrapper whose add_watch fails like a kernel out of watches."""

        def inotify_init(self) -> int:
            return os.open(os.devnull, os.O_RDONLY)

        def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
            return -1

        def inotify_rm_watch(self, fd: int, wd: int) -> int:
            return 0

        def get_errno(self) -> int:
            return 28  # ENOSPC

    ino = Inotify(wrapper=FullKernel())
    try:
        with pytest.raises(WatchLimitReached) as info:
            ino.add_watch(b"/tmp")
        assert "sysctl -w fs.inotify.max_user_watches=" in str(info.value)
    finally:
        ino.close()


def test_read_limits_from_proc() -> None:
    """The real /proc values are read as integers."""
    limits = read_limits()
    with open("/proc/sys/fs/inotify/max_user_watches") as f:
        assert limits.max_user_watches == int(f.read())
    assert limits.max_queued_events > 0 and limits.max_user_instances > 0


def test_read_limits_from_other_dir(tmp_path: Path) -> None:
    """read_limits reads the three files of the given directory."""
    for name, value in [
        ("max_user_watches", 100),
        ("max_queued_events", 200),
        ("max_user_instances", 3),
    ]:
        (tmp_path / name).write_text(f"{value}\n")
    assert read_limits(str(tmp_path)) == Limits(100, 200, 3)


def test_check_limits_names_sysctl_and_value() -> None:
    """Too few watches or a short queue give one warning each with the exact sysctl line."""
    warnings = check_limits(Limits(8192, 1024, 128), needed_watches=100_000)
    assert len(warnings) == 2
    want = suggested_watches(100_000)
    assert want >= 125_000
    assert f"sysctl -w fs.inotify.max_user_watches={want}" in warnings[0]
    assert "sysctl -w fs.inotify.max_queued_events=16384" in warnings[1]
    assert check_limits(Limits(1_000_000, 16384, 128), needed_watches=100_000) == []


def test_watch_mask_has_no_modify() -> None:
    """The mask asks for close-after-write, not every write, and never follows symlinks."""
    assert not WATCH_MASK & ev.IN_MODIFY
    assert WATCH_MASK & ev.IN_CLOSE_WRITE
    assert WATCH_MASK & ev.IN_DONT_FOLLOW and WATCH_MASK & ev.IN_ONLYDIR


def test_reader_registers_and_delivers(inotify: Inotify, tmp_path: Path) -> None:
    """The reader is an IReadDescriptor; doRead delivers parsed events in order."""
    reactor = MemoryReactorClock()
    batches: list[list[RawEvent]] = []
    reader = InotifyReader(inotify, batches.append, reactor)
    assert IReadDescriptor.providedBy(reader)
    reader.startReading()
    assert reader in reactor.getReaders()
    inotify.add_watch(os.fsencode(tmp_path))
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"")
    deadline = time.monotonic() + 5
    while sum(len(b) for b in batches) < 100:
        assert select.select([reader], [], [], max(0, deadline - time.monotonic()))[0]
        reader.doRead()
    flat = [e for b in batches for e in b]
    assert [e.name for e in flat if e.mask & ev.IN_CLOSE_WRITE] == [
        f"f{i}".encode() for i in range(50)
    ]
    reader.doRead()  # nothing queued: no call, no error
    reader.stopReading()
    assert reader not in reactor.getReaders()


def test_reader_keeps_partial_record_and_survives_handler_error() -> None:
    """A record split across reads is delivered once; a failing handler does not stop it."""

    class ScriptedInotify:
        """An inotify stand-in whose reads return scripted chunks."""

        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks
            self.forgotten: list[int] = []

        def read(self) -> bytes:
            return self.chunks.pop(0) if self.chunks else b""

        def fileno(self) -> int:
            return -1

        def forget(self, wd: int) -> None:
            self.forgotten.append(wd)

    one = struct.pack("iIII", 3, ev.IN_CREATE, 0, 16) + b"name".ljust(16, b"\0")
    ignored = struct.pack("iIII", 3, ev.IN_IGNORED, 0, 0)
    seen: list[list[RawEvent]] = []

    def handler(events: list[RawEvent]) -> None:
        seen.append(events)
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    fake = ScriptedInotify([one[:10]])
    logged: list[dict] = []
    reader = InotifyReader(
        fake,  # type: ignore[arg-type]
        handler,
        MemoryReactorClock(),
        log=Logger(observer=logged.append),
    )
    reader.doRead()
    assert seen == []
    fake.chunks = [one[10:] + ignored]
    reader.doRead()
    fake.chunks = [one]
    reader.doRead()
    assert seen == [
        [RawEvent(3, ev.IN_CREATE, 0, b"name"), RawEvent(3, ev.IN_IGNORED, 0, b"")],
        [RawEvent(-1, ev.IN_Q_OVERFLOW, 0, b"")],  # the lost events: rescan the tree
        [RawEvent(3, ev.IN_CREATE, 0, b"name")],
    ]
    assert fake.forgotten == [3]
    assert len(logged) == 1 and "log_failure" not in logged[0]  # one line, no traceback
    assert "rescanning" in logged[0]["log_format"]


class RefusingWrapper:
    """The syscall binding as the kernel answers a user who may not read a directory."""

    def __init__(self, code: int) -> None:
        self.code = code

    def inotify_init(self) -> int:
        return os.open("/dev/null", os.O_RDONLY)

    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
        return -1

    def get_errno(self) -> int:
        return self.code


@pytest.mark.parametrize("code", [13, 1])  # EACCES, EPERM
def test_unreadable_directory_is_path_unreadable(code: int) -> None:
    """EACCES or EPERM from inotify_add_watch is PathUnreadable, a PermissionError."""
    ino = Inotify(wrapper=RefusingWrapper(code))
    try:
        with pytest.raises(PathUnreadable) as caught:
            ino.add_watch(b"/some/dir")
        assert isinstance(caught.value, PermissionError) and caught.value.errno == code
    finally:
        ino.close()
