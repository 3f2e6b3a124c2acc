"""Tests for mirrord.events: parsing struct-packed records and pairing moves."""

from __future__ import annotations

import struct

import pyinotify
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrord import events as ev
from mirrord.events import (
    HEADER,
    MovePairer,
    Paired,
    RawEvent,
    UnpairedFrom,
    UnpairedTo,
    parse,
)


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


def moved_from(cookie: int, name: bytes = b"a") -> RawEvent:
    return RawEvent(1, ev.IN_MOVED_FROM, cookie, name)


def moved_to(cookie: int, name: bytes = b"b") -> RawEvent:
    return RawEvent(1, ev.IN_MOVED_TO, cookie, name)


def test_pairer_pairs_by_cookie() -> None:
    """FROM then TO with the same cookie come out as one Paired, nothing left pending."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=0.1)
    assert pairer.feed(moved_from(9), now=0.0) == []
    assert len(pairer) == 1
    assert pairer.feed(moved_to(9), now=0.05) == [Paired(moved_from(9), moved_to(9))]
    assert len(pairer) == 0
    assert pairer.next_deadline() is None


def test_pairer_interleaved_cookies() -> None:
    """Two renames in flight pair with their own partners, whatever the order."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=1.0)
    pairer.feed(moved_from(1, b"x"), 0.0)
    pairer.feed(moved_from(2, b"y"), 0.0)
    assert pairer.feed(moved_to(2, b"y2"), 0.0) == [Paired(moved_from(2, b"y"), moved_to(2, b"y2"))]
    assert pairer.feed(moved_to(1, b"x2"), 0.0) == [Paired(moved_from(1, b"x"), moved_to(1, b"x2"))]


def test_pairer_unpaired_to_is_immediate() -> None:
    """A TO with no held FROM is reported at once as UnpairedTo."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=0.1)
    assert pairer.feed(moved_to(3), 0.0) == [UnpairedTo(moved_to(3))]


def test_pairer_expires_from_after_wait() -> None:
    """A FROM whose partner never comes is released by expire() once its wait is over."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=0.1)
    pairer.feed(moved_from(4), now=10.0)
    assert pairer.next_deadline() == pytest.approx(10.1)
    assert pairer.expire(10.05) == []
    assert pairer.expire(10.1) == [UnpairedFrom(moved_from(4))]
    assert len(pairer) == 0
    assert pairer.feed(moved_to(4), 10.2) == [UnpairedTo(moved_to(4))]


def test_pairer_expires_oldest_first_only() -> None:
    """expire() releases exactly the halves whose deadline passed, oldest first."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=1.0)
    pairer.feed(moved_from(1), 0.0)
    pairer.feed(moved_from(2), 0.5)
    pairer.feed(moved_from(3), 2.0)
    assert pairer.expire(1.6) == [UnpairedFrom(moved_from(1)), UnpairedFrom(moved_from(2))]
    assert pairer.next_deadline() == 3.0


def test_pairer_late_partner_still_pairs_before_expiry() -> None:
    """A TO arriving after the deadline but before expire() ran still pairs."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=0.1)
    pairer.feed(moved_from(5), 0.0)
    assert pairer.feed(moved_to(5), 5.0) == [Paired(moved_from(5), moved_to(5))]


def test_pairer_bounded_table_evicts_oldest() -> None:
    """Past max_pending held halves, the oldest comes out as UnpairedFrom."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=60.0, max_pending=3)
    for cookie in (1, 2, 3):
        assert pairer.feed(moved_from(cookie), 0.0) == []
    assert pairer.feed(moved_from(4), 0.0) == [UnpairedFrom(moved_from(1))]
    assert len(pairer) == 3
    assert pairer.feed(moved_to(1), 0.0) == [UnpairedTo(moved_to(1))]


def test_pairer_reused_cookie_releases_the_older() -> None:
    """A second FROM with a held cookie releases the first as UnpairedFrom."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=1.0)
    pairer.feed(moved_from(6, b"old"), 0.0)
    assert pairer.feed(moved_from(6, b"new"), 0.1) == [UnpairedFrom(moved_from(6, b"old"))]
    assert pairer.feed(moved_to(6), 0.2) == [Paired(moved_from(6, b"new"), moved_to(6))]


def test_pairer_refuses_other_events() -> None:
    """Feeding a non-move event is a programming error, reported as ValueError."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=1.0)
    with pytest.raises(ValueError):
        pairer.feed(RawEvent(1, ev.IN_CREATE, 0, b"x"), 0.0)


def test_pairer_update_held_keeps_deadlines_and_order() -> None:
    """update_held replaces waiting halves in place: each keeps its deadline and
    its place, so it still expires (or pairs) as it would have, only changed."""
    pairer: MovePairer[RawEvent] = MovePairer(wait=1.0)
    pairer.feed(moved_from(1, b"d/x"), 0.0)
    pairer.feed(moved_from(2, b"e/y"), 0.5)
    pairer.update_held(lambda h: RawEvent(h.wd, h.mask, h.cookie, b"D/x") if h.cookie == 1 else h)
    assert pairer.next_deadline() == 1.0
    assert pairer.expire(1.0) == [UnpairedFrom(moved_from(1, b"D/x"))]
    assert pairer.feed(moved_to(2), 1.2) == [Paired(moved_from(2, b"e/y"), moved_to(2))]
    pairer.update_held(lambda h: pytest.fail("nothing is held"))
