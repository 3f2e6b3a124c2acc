"""The MRTR codec (fs_sync/ftpbatch.py): pure, fed whole and byte by byte."""

from __future__ import annotations

import pytest

from fs_sync.ftpbatch import (
    MAX_NAME,
    MAX_NAMES,
    BatchError,
    Content,
    End,
    FrameReader,
    NameReader,
    Start,
    Status,
    chunk,
    encode_names,
)

NAMES = [b"/a", b"/dir/\xff not utf-8", b"/with space/and\ttab"]
FRAMES = (
    bytes([Status.OK]) + chunk(b"hello ") + chunk(b"world") + chunk(b"") + bytes([Status.OK])
    + bytes([Status.MISSING])
    + bytes([Status.OK]) + chunk(b"") + bytes([Status.OK])  # an empty file
    + bytes([Status.OK]) + chunk(b"par") + chunk(b"") + bytes([Status.FAILED])
    + bytes([Status.DENIED])
)  # fmt: skip


def files_of(events: list) -> list[tuple[Status, bytes, Status | None]]:
    """Events folded into (start status, content, end status) per file."""
    out: list[tuple[Status, bytes, Status | None]] = []
    for event in events:
        match event:
            case Start(status):
                out.append((status, b"", None))
            case Content(data):
                status, content, _ = out[-1]
                out[-1] = (status, content + data, None)
            case End(status):
                out[-1] = (out[-1][0], out[-1][1], status)
    return out


EXPECTED = [
    (Status.OK, b"hello world", Status.OK),
    (Status.MISSING, b"", None),
    (Status.OK, b"", Status.OK),
    (Status.OK, b"par", Status.FAILED),
    (Status.DENIED, b"", None),
]


def test_names_round_trip_whole_and_byte_by_byte():
    data = encode_names(NAMES)
    whole = NameReader()
    whole.feed(data)
    assert whole.done and whole.names == NAMES
    slow = NameReader()
    for i in range(len(data)):
        assert not slow.done
        slow.feed(data[i : i + 1])
    assert slow.done and slow.names == NAMES


def test_frames_read_whole_and_byte_by_byte_give_the_same_files():
    whole = FrameReader()
    assert files_of(list(whole.feed(FRAMES))) == EXPECTED
    assert whole.between_files
    slow = FrameReader()
    events = [e for i in range(len(FRAMES)) for e in slow.feed(FRAMES[i : i + 1])]
    assert files_of(events) == EXPECTED
    assert slow.between_files


def test_a_reply_cut_mid_file_is_not_between_files():
    reader = FrameReader()
    list(reader.feed(FRAMES[:5]))
    assert not reader.between_files


def test_unknown_status_is_our_error():
    with pytest.raises(BatchError):
        list(FrameReader().feed(b"\x09"))


@pytest.mark.parametrize(
    "names", [[b""], [b"/a\0b"], [b"/" + b"x" * MAX_NAME], [b"/n"] * (MAX_NAMES + 1)]
)
def test_names_that_cannot_travel_are_refused_before_sending(names):
    with pytest.raises(BatchError):
        encode_names(names)


@pytest.mark.parametrize(
    "data",
    [
        b"/x" * (MAX_NAME // 2 + 1),  # one name, never ended, too long
        b"".join(b"/%d\0" % i for i in range(MAX_NAMES + 1)) + b"\0",
        b"/a\0\0trailing",
    ],
)
def test_hostile_name_lists_are_refused(data):
    with pytest.raises(BatchError):
        NameReader().feed(data)
