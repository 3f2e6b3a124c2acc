"""LineBuffer: the same lines however the stream is chunked, and the 64 KiB cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import INVALID_COMMAND, MAX_LINE, LineBuffer, ProtocolError

STREAM = b"START\r\nINIT\nSN:abc,1\r\n\r\n\nNEXT\n \r\nA\rB\r\n" + b"partial\r"
LINES = [b"START", b"INIT", b"SN:abc,1", b"", b"", b"NEXT", b" ", b"A\rB"]


def feed_all(buffer: LineBuffer, chunks: list[bytes]) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(buffer.feed(chunk))
    return lines


def test_whole_stream_at_once() -> None:
    """CRLF and bare LF both end a line; a lone CR inside a line is kept; the tail stays pending."""
    buffer = LineBuffer()
    assert buffer.feed(STREAM) == LINES
    assert buffer.pending == b"partial\r"


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_every_two_chunk_split(cut: int) -> None:
    """Splitting the stream at any one boundary yields the same lines and pending tail."""
    buffer = LineBuffer()
    assert feed_all(buffer, [STREAM[:cut], STREAM[cut:]]) == LINES
    assert buffer.pending == b"partial\r"


def test_every_three_chunk_split() -> None:
    """Splitting at every pair of boundaries (including empty chunks) changes nothing."""
    for i in range(len(STREAM) + 1):
        for j in range(i, len(STREAM) + 1):
            buffer = LineBuffer()
            assert feed_all(buffer, [STREAM[:i], STREAM[i:j], STREAM[j:]]) == LINES, (i, j)
            assert buffer.pending == b"partial\r"


def test_byte_by_byte() -> None:
    """Feeding one byte at a time yields the same lines."""
    buffer = LineBuffer()
    assert feed_all(buffer, [STREAM[i : i + 1] for i in range(len(STREAM))]) == LINES


LINE = st.binary(max_size=40).filter(lambda b: b"\n" not in b and not b.endswith(b"\r"))


@given(
    st.lists(st.tuples(LINE, st.sampled_from([b"\n", b"\r\n"]))),
    LINE,
    st.lists(st.integers(min_value=0, max_value=2000)),
)
def test_random_streams_and_chunkings(
    lines: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]
) -> None:
    """Any lines with any terminators, cut anywhere, come out whole with the tail pending."""
    stream = b"".join(line + end for line, end in lines) + tail
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:], strict=False)]
    buffer = LineBuffer()
    assert feed_all(buffer, chunks) == [line for line, _ in lines]
    assert buffer.pending == tail


def test_line_at_the_cap_is_accepted() -> None:
    """A line of exactly max_length bytes (CRLF excluded) passes, also split before its LF."""
    buffer = LineBuffer()
    line = b"x" * MAX_LINE
    assert buffer.feed(line + b"\r") == []
    assert buffer.feed(b"\nNEXT\n") == [line, b"NEXT"]


def test_over_long_complete_line_is_refused() -> None:
    """A line one byte over the cap raises ProtocolError with INVALID COMMAND and close."""
    buffer = LineBuffer()
    with pytest.raises(ProtocolError) as info:
        buffer.feed(b"x" * (MAX_LINE + 1) + b"\r\n")
    assert info.value.reply == INVALID_COMMAND
    assert info.value.close is True


def test_over_long_partial_line_is_refused_before_its_newline() -> None:
    """A peer that never sends LF is cut off once it has sent more than the cap."""
    buffer = LineBuffer(max_length=10)
    assert buffer.feed(b"START\n" + b"y" * 10) == [b"START"]
    with pytest.raises(ProtocolError) as info:
        buffer.feed(b"y")
    assert (info.value.reply, info.value.close) == (INVALID_COMMAND, True)
    assert buffer.pending == b""


def test_small_cap_counts_line_bytes_only() -> None:
    """The cap applies to the line without its terminator, and to each line separately."""
    buffer = LineBuffer(max_length=3)
    assert buffer.feed(b"abc\r\nabc\nab") == [b"abc", b"abc"]
    with pytest.raises(ProtocolError):
        buffer.feed(b"cd\n")
