"""fs_mirror.replay: where a chunk's progress is saved around its MOVEs (pure, no I/O)."""

from __future__ import annotations

from fs_mirror.replay import checkpoints
from protocol.records import Action, Record


def R(action: Action, path: bytes, target: bytes | None = None) -> Record:
    return Record(action, path, target)


def MOVE(src: bytes, dst: bytes) -> Record:
    return R(Action.MOVE, src, dst)


def test_a_chunk_without_moves_saves_nothing():
    assert checkpoints([R(Action.CREATE, b"/a"), R(Action.FWRITE, b"/a/f")]) == []


def test_a_move_that_stands_apart_saves_nothing():
    chunk = [R(Action.FWRITE, b"/x/f"), MOVE(b"/a", b"/b"), R(Action.CREATE, b"/c")]
    assert checkpoints(chunk) == []


def test_a_record_below_the_source_before_the_move_saves_before_it():
    """Replayed, the CREATE would make /a anew for the MOVE to put over /b."""
    chunk = [R(Action.CREATE, b"/a/sub"), MOVE(b"/a", b"/b")]
    assert checkpoints(chunk) == [0]


def test_a_record_below_the_source_after_the_move_saves_after_it():
    """mv a b; mkdir a: the replayed MOVE would find the new /a."""
    chunk = [MOVE(b"/a", b"/b"), R(Action.CREATE, b"/a")]
    assert checkpoints(chunk) == [0]


def test_records_at_the_destination_count_too():
    chunk = [R(Action.DELETE, b"/b"), MOVE(b"/a", b"/b"), R(Action.FWRITE, b"/b/f")]
    assert checkpoints(chunk) == [0, 1]


def test_a_move_first_in_the_run_needs_no_mark_before_it():
    """A replay starts at the first record not applied yet: the MOVE itself."""
    chunk = [R(Action.CREATE, b"/a/sub"), MOVE(b"/a", b"/b"), R(Action.CREATE, b"/a")]
    assert checkpoints(chunk, start=1) == [1]


def test_moves_a_killed_run_applied_are_not_marked():
    chunk = [MOVE(b"/a", b"/b"), R(Action.CREATE, b"/a"), R(Action.FWRITE, b"/z")]
    assert checkpoints(chunk, start=1) == []


def test_only_replacing_records_count_at_an_ancestor():
    """A DELETE of /p reaches /p/a; an ATTRIB or CREATE of /p does not change it."""
    harmless = [R(Action.ATTRIB, b"/p"), R(Action.CREATE, b"/p"), MOVE(b"/p/a", b"/q")]
    assert checkpoints(harmless) == []
    assert checkpoints([R(Action.DELETE, b"/p"), MOVE(b"/p/a", b"/q")]) == [0]
    assert checkpoints([R(Action.SYMLINK, b"/p", b"x"), MOVE(b"/p/a", b"/q")]) == [0]
    assert checkpoints([MOVE(b"/p", b"/r"), MOVE(b"/q", b"/p/a")]) == [0]


def test_a_symlink_text_is_not_a_path():
    """The link's text may look like the source's path; it touches nothing there."""
    chunk = [R(Action.SYMLINK, b"/l", b"/a/sub"), MOVE(b"/a", b"/b")]
    assert checkpoints(chunk) == []


def test_similar_names_are_not_ancestors():
    chunk = [R(Action.CREATE, b"/ab"), R(Action.FWRITE, b"/a.txt"), MOVE(b"/a", b"/b")]
    assert checkpoints(chunk) == []


def test_the_second_move_looks_back_only_to_the_last_mark():
    """After the mark that follows the first MOVE, only later records count for the second."""
    chunk = [
        MOVE(b"/a", b"/b"),
        R(Action.CREATE, b"/a"),  # marks after the first MOVE
        R(Action.CREATE, b"/c/d"),
        MOVE(b"/c", b"/e"),  # /c/d lies after the mark at 0: a mark before this MOVE
        MOVE(b"/f", b"/g"),  # nothing of /f or /g since: no mark
    ]
    assert checkpoints(chunk) == [0, 2]
