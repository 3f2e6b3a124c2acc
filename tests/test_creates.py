"""CreateWait: new regular files held until their close, pure logic (no I/O)."""

from __future__ import annotations

from mirrord.creates import CreateWait


def test_held_until_released_or_its_wait_runs_out() -> None:
    """A held path leaves by its close (release) or at now + wait, oldest first."""
    w = CreateWait(0.5)
    assert w.hold(b"/t/a", 10.0) == [] and w.hold(b"/t/b", 10.2) == []
    assert b"/t/a" in w and len(w) == 2 and w.next_deadline() == 10.5
    assert w.release(b"/t/a") and not w.release(b"/t/a")
    assert w.expire(10.6) == [] and w.next_deadline() == 10.7
    assert w.expire(10.7) == [b"/t/b"] and len(w) == 0 and w.next_deadline() is None


def test_held_once_and_drained_in_creation_order() -> None:
    """Held twice keeps the first deadline; drain hands all of them over, oldest first."""
    w = CreateWait(1.0)
    for i, name in enumerate([b"/c", b"/a", b"/b"]):
        w.hold(name, float(i))
    w.hold(b"/c", 5.0)
    assert w.next_deadline() == 1.0
    assert w.drain() == [b"/c", b"/a", b"/b"] and len(w) == 0


def test_bounded_lets_the_oldest_go_at_once() -> None:
    """Past max_pending the oldest path is handed back to be told now."""
    w = CreateWait(1.0, max_pending=2)
    assert w.hold(b"/1", 0.0) == [] and w.hold(b"/2", 0.0) == []
    assert w.hold(b"/3", 0.0) == [b"/1"]
    assert len(w) == 2 and b"/1" not in w
