"""Tests for mirrord.events: pairing the two halves of a rename."""

from __future__ import annotations

import pytest

from fs_sync import inotify as ev
from fs_sync.inotify import RawEvent
from mirrord.events import MovePairer, Paired, UnpairedFrom, UnpairedTo


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
