"""Tests for fs_sync.inotify: the pure parser of struct inotify_event records, and the binding."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pyinotify
from hypothesis import given
from hypothesis import strategies as st

from fs_sync import inotify as ev
from fs_sync.inotify import HEADER, RawEvent, libc, parse


def record(wd: int, mask: int, cookie: int, name: bytes, pad_to: int = 16) -> bytes:
    """A record as the kernel writes it: the name NUL-padded to a multiple of pad_to."""
    if name:
        padded_len = (len(name) // pad_to + 1) * pad_to
        padded = name + b"\0" * (padded_len - len(name))
    else:
        padded = b""
    return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded


SAMPLE = [
    RawEvent(1, ev.IN_CREATE | ev.IN_ISDIR, 0, b"dir"),
    RawEvent(1, ev.IN_CLOSE_WRITE, 0, b"exactly-16-bytes"),
    RawEvent(2, ev.IN_DELETE_SELF, 0, b""),
    RawEvent(2, ev.IN_IGNORED, 0, b""),
    RawEvent(3, ev.IN_MOVED_FROM, 77, b"caf\xe9-not-utf8"),
    RawEvent(4, ev.IN_MOVED_TO, 77, "naïve €".encode()),
    RawEvent(-1, ev.IN_Q_OVERFLOW, 0, b""),
]


def sample_bytes() -> bytes:
    return b"".join(record(e.wd, e.mask, e.cookie, e.name) for e in SAMPLE)


def test_header_is_sixteen_bytes() -> None:
    """The record header is the kernel's 16-byte struct inotify_event."""
    assert HEADER.size == 16


def test_parse_whole_buffer() -> None:
    """A whole buffer decodes to every event, names stripped of NUL padding, no tail."""
    assert parse(sample_bytes()) == (SAMPLE, b"")


def test_parse_every_split_point() -> None:
    """Split at any byte, the two halves decode to the same events and no leftover."""
    buf = sample_bytes()
    for cut in range(len(buf) + 1):
        first, tail = parse(buf[:cut])
        second, rest = parse(tail + buf[cut:])
        assert first + second == SAMPLE, cut
        assert rest == b""
        assert buf[:cut].endswith(tail)


def test_parse_byte_by_byte() -> None:
    """Fed one byte at a time with the tail carried, the stream decodes exactly once."""
    buf = sample_bytes()
    got: list[RawEvent] = []
    tail = b""
    for i in range(len(buf)):
        events, tail = parse(tail + buf[i : i + 1])
        got.extend(events)
    assert got == SAMPLE
    assert tail == b""


def test_parse_keeps_partial_record_as_tail() -> None:
    """A header whose name is not complete yet is returned untouched as the tail."""
    whole = record(5, ev.IN_CREATE, 0, b"abc")
    events, tail = parse(whole + whole[:20])
    assert events == [RawEvent(5, ev.IN_CREATE, 0, b"abc")]
    assert tail == whole[:20]


@given(
    st.lists(
        st.tuples(
            st.integers(-1, 2**31 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x")),
            st.sampled_from([1, 4, 16]),
        ),
        max_size=8,
    ),
    st.integers(0, 400),
)
def test_parse_round_trips_any_records(records: list, cut: int) -> None:
    """Any packed records, any padding, any cut: parse returns exactly the records."""
    buf = b"".join(record(wd, m, c, n, pad) for wd, m, c, n, pad in records)
    cut = min(cut, len(buf))
    first, tail = parse(buf[:cut])
    second, rest = parse(tail + buf[cut:])
    assert first + second == [RawEvent(wd, m, c, n) for wd, m, c, n, _ in records]
    assert rest == b""


def test_constants_match_pyinotify() -> None:
    """Our ABI constants equal pyinotify's (the kernel's) values."""
    for name in dir(ev):
        if name.startswith("IN_"):
            assert getattr(ev, name) == pyinotify.EventsCodes.ALL_FLAGS[name], name


def test_binding_answers_as_the_c_library(tmp_path: Path) -> None:
    """Nonblocking close-on-exec descriptor, bytes paths, -1 and the errno on failure."""
    binding = libc()
    assert libc() is binding
    fd = binding.inotify_init()
    assert fd >= 0
    try:
        assert not os.get_blocking(fd) and not os.get_inheritable(fd)
        odd = os.fsencode(tmp_path) + b"/\xff"
        os.mkdir(odd)
        wd = binding.inotify_add_watch(fd, odd, ev.IN_CREATE | ev.IN_ONLYDIR)
        assert wd >= 0
        assert binding.inotify_add_watch(fd, odd + b"/gone", ev.IN_CREATE) == -1
        assert binding.get_errno() == errno.ENOENT
        assert binding.inotify_rm_watch(fd, wd) == 0
        assert binding.inotify_rm_watch(fd, wd) == -1
        assert binding.get_errno() == errno.EINVAL
    finally:
        os.close(fd)
