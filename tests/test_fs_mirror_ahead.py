"""Batches held while a chunk is applied: one chunk of them, saved at the last batch end."""

from __future__ import annotations

from fs_mirror.ahead import Chunk, Held
from protocol.records import Action, Record


def _records(*names: bytes) -> list[Record]:
    return [Record(Action.CREATE, b"/" + name) for name in names]


def test_batches_held_become_one_chunk_saved_at_the_last_end() -> None:
    """Consecutive batches join in order; the chunk starts at the first one's serial."""
    held = Held(10)
    assert not held
    held.add(_records(b"a"), first=11, serial=11, ends=True)
    held.add(_records(b"b", b"c"), first=12, serial=13, ends=True)
    assert held and len(held) == 3 and not held.full()
    assert held.take() == Chunk(_records(b"a", b"b", b"c"), first=11, serial=13, saves=13)
    assert not held and held.take() == Chunk([], None, None, None)


def test_a_cut_inside_a_batch_saves_only_the_end_before_it() -> None:
    """Records of a batch not yet ended never let its serial be saved; one before may be."""
    held = Held(3)
    held.add(_records(b"a"), first=11, serial=11, ends=True)
    held.add(_records(b"b", b"c"), first=12, serial=20, ends=False)
    assert held.full()
    assert held.take() == Chunk(_records(b"a", b"b", b"c"), first=11, serial=20, saves=11)
    held.add(_records(b"d"), first=14, serial=20, ends=False)
    assert held.take().saves is None


def test_a_batch_ending_with_nothing_left_still_saves() -> None:
    """A batch whose records all went in an earlier chunk: its end is still to be saved."""
    held = Held(2)
    held.add([], first=None, serial=14, ends=True)
    assert held and len(held) == 0
    assert held.take() == Chunk([], None, 14, 14)
