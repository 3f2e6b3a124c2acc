"""Records: every action with metadata encodes to one line and decodes back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import Action, Meta, ProtocolError, Record

TRICKY = st.lists(
    st.sampled_from(
        [
            b"/",
            b"%",
            b"\t",
            b"\r",
            b"\n",
            b"\x00",
            b"\x7f",
            b"\xff",
            b"\xc3\xa9",
            b"=",
            b":",
            b" ",
            b"a",
            b"mode=1",
        ]
    ),
    min_size=1,
).map(b"".join)
PATHS = st.one_of(st.binary(min_size=1), TRICKY)
OPTIONAL = st.none() | st.integers(min_value=0, max_value=2**64)
METAS = st.builds(
    Meta,
    mode=st.none() | st.integers(min_value=0, max_value=0o7777),
    uid=OPTIONAL,
    gid=OPTIONAL,
    size=OPTIONAL,
    mtime_ns=st.none() | st.integers(min_value=-(2**62), max_value=2**64),
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    action = draw(st.sampled_from(Action))
    target = draw(PATHS) if action in (Action.MOVE, Action.SYMLINK) else None
    return Record(action, draw(PATHS), target, draw(METAS))


@given(records())
def test_every_record_round_trips(record: Record) -> None:
    """decode(encode(r)) == r for every action, any byte paths and any metadata."""
    assert Record.decode(record.encode()) == record


@given(records())
def test_encoded_record_is_one_line_of_tab_separated_fields(record: Record) -> None:
    """The line has no CR/LF, and one TAB between each path and metadata field."""
    line = record.encode()
    assert b"\n" not in line and b"\r" not in line
    npaths = 1 if record.target is None else 2
    assert line.count(b"\t") == npaths - 1 + len(record.meta.fields())
    assert line.startswith(record.action.value.encode() + b":")


def test_exact_wire_form() -> None:
    """Fields are written as the contract shows: octal mode, decimal ids, seconds mtime."""
    meta = Meta(mode=0o755, uid=0, gid=33, size=1024, mtime_ns=1_700_000_000_123_456_789)
    record = Record(Action.SYMLINK, b"/var/www/l%nk", b"../t\target", meta)
    assert record.encode() == (
        b"SYMLINK:/var/www/l%25nk\t../t%09arget\tmode=755\tuid=0\tgid=33\tsize=1024"
        b"\tmtime=1700000000.123456789"
    )
    assert Record(Action.DELETE, b"/x").encode() == b"DELETE:/x"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_700_000_000_000_000_000, b"1700000000"),
        (1_700_000_000_100_000_000, b"1700000000.1"),
        (1_700_000_000_000_000_001, b"1700000000.000000001"),
        (0, b"0"),
        (-1_500_000_000, b"-1.5"),
        (-1, b"-0.000000001"),
    ],
)
def test_mtime_is_seconds_with_trailing_zeros_stripped(ns: int, text: bytes) -> None:
    """mtime_ns is written as seconds, fraction without trailing zeros, and read back exactly."""
    line = Record(Action.ATTRIB, b"/f", meta=Meta(mtime_ns=ns)).encode()
    assert line == b"ATTRIB:/f\tmtime=" + text
    assert Record.decode(line).meta.mtime_ns == ns


def test_mtime_decodes_exactly_without_float_rounding() -> None:
    """A fraction with nine digits on a large second count keeps every nanosecond."""
    record = Record.decode(b"ATTRIB:/f\tmtime=9999999999.999999999")
    assert record.meta.mtime_ns == 9_999_999_999_999_999_999


def test_mode_accepts_leading_zero() -> None:
    """mode=0644 and mode=644 mean the same permission bits."""
    assert Record.decode(b"ATTRIB:/f\tmode=0644").meta.mode == 0o644
    assert Record.decode(b"ATTRIB:/f\tmode=644").meta.mode == 0o644


def test_unknown_keys_are_ignored() -> None:
    """Metadata keys the client does not know, even odd ones, are skipped."""
    record = Record.decode(b"FWRITE:/f\tcolour=blue\tsize=3\t=\tx=\tmode=600")
    assert record == Record(Action.FWRITE, b"/f", meta=Meta(mode=0o600, size=3))


def test_path_may_contain_equals_and_colon() -> None:
    """Paths are positional, so '=' and ':' inside them need no escape."""
    record = Record.decode(b"MOVE:/a=b:c\t/d=e\tuid=1")
    assert record == Record(Action.MOVE, b"/a=b:c", b"/d=e", Meta(uid=1))


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"CREATE",
        b"CREATE:",
        b"create:/x",
        b"UPDATE:/x",
        b" CREATE:/x",
        b"MOVE:/a",
        b"SYMLINK:/a\t",
        b"DELETE:/a\t/b",
        b"CREATE:/a\tmode",
        b"CREATE:/a\tmode=8",
        b"CREATE:/a\tmode=-1",
        b"CREATE:/a\tmode=0o644",
        b"CREATE:/a\tmode=10000",
        b"CREATE:/a\tmode=",
        b"CREATE:/a\tuid=x",
        b"CREATE:/a\tuid= 1",
        b"CREATE:/a\tuid=+1",
        b"CREATE:/a\tgid=1_0",
        b"CREATE:/a\tsize=" + b"9" * 21,
        b"CREATE:/a\tsize=" + b"9" * 5000,
        b"CREATE:/a\tmtime=1.1234567891",
        b"CREATE:/a\tmtime=.5",
        b"CREATE:/a\tmtime=1.",
        b"CREATE:/a\tmtime=1e9",
        b"CREATE:/a\tuid=1\tuid=2",
        b"CREATE:/a%zz",
    ],
)
def test_malformed_records_are_protocol_errors(line: bytes) -> None:
    """Wrong field counts, bare fields, bad numbers and bad escapes raise ProtocolError."""
    with pytest.raises(ProtocolError):
        Record.decode(line)


RECORDISH = st.tuples(
    st.sampled_from([b"CREATE:", b"FWRITE:", b"DELETE:", b"MOVE:", b"SYMLINK:", b"ATTRIB:", b""]),
    st.lists(
        st.sampled_from(
            [
                b"\t",
                b"=",
                b"%",
                b"0",
                b"9",
                b".",
                b"-",
                b"/",
                b"mode",
                b"mtime",
                b"uid",
                b"size",
                b"\xff",
                b"%4",
            ]
        )
    ).map(b"".join),
).map(b"".join)


@given(st.one_of(st.binary(), RECORDISH))
def test_decode_raises_only_protocol_error(line: bytes) -> None:
    """Record.decode of any bytes returns a Record or raises ProtocolError, nothing else."""
    try:
        record = Record.decode(line)
    except ProtocolError:
        return
    assert Record.decode(record.encode()) == record


@pytest.mark.parametrize(
    "make",
    [
        lambda: Record(Action.MOVE, b"/a"),
        lambda: Record(Action.SYMLINK, b"/a", b""),
        lambda: Record(Action.CREATE, b"/a", b"/b"),
        lambda: Record(Action.DELETE, b""),
        lambda: Meta(mode=0o100644),
        lambda: Meta(uid=-1),
        lambda: Meta(size=-5),
    ],
)
def test_invalid_values_cannot_be_built(make: object) -> None:
    """A record breaking the target rule or metadata out of range is a ValueError."""
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_unreadable_round_trips_on_a_directory_create():
    """``unreadable=1`` survives encode/decode; ``0`` or absent means readable."""
    record = Record(Action.CREATE, b"/srv/secret", meta=Meta(mode=0o700, unreadable=True))
    assert record.encode() == b"CREATE:/srv/secret\tmode=700\tunreadable=1"
    assert Record.decode(record.encode()) == record
    assert Record.decode(b"CREATE:/srv/secret\tunreadable=0").meta.unreadable is False
    assert Record.decode(b"CREATE:/srv/secret").meta.unreadable is False


def test_unreadable_takes_only_zero_or_one():
    """Any other value of ``unreadable`` is a protocol error, never a guess."""
    with pytest.raises(ProtocolError):
        Record.decode(b"CREATE:/srv/secret\tunreadable=yes")
