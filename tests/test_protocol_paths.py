"""Path quoting on the wire: any bytes round-trip, only the few unsafe bytes are escaped."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ProtocolError, is_under, quote, unquote

# Paths built from the bytes that matter most: separators, the escape
# character, control bytes, DEL, invalid UTF-8 and a UTF-8 sequence.
TRICKY = st.lists(
    st.sampled_from(
        [
            b"/",
            b"%",
            b"\t",
            b"\r",
            b"\n",
            b"\x00",
            b"\x1f",
            b"\x7f",
            b"\xff",
            b"\xc3\xa9",
            b"=",
            b":",
            b" ",
            b"a",
            b"%25",
            b"%zz",
        ]
    ),
).map(b"".join)
PATHS = st.one_of(st.binary(), TRICKY)
UNSAFE = re.compile(rb"[\x00-\x1f\x7f]")


@given(PATHS)
def test_quote_round_trips_any_bytes(path: bytes) -> None:
    """unquote(quote(p)) gives back every path byte for byte."""
    assert unquote(quote(path)) == path


@given(PATHS)
def test_quoted_path_has_no_control_bytes_and_only_escape_percents(path: bytes) -> None:
    """A quoted path holds no control byte or DEL, and every '%' starts an upper-case escape."""
    quoted = quote(path)
    assert UNSAFE.search(quoted) is None
    assert quoted.count(b"%") == len(re.findall(rb"%[0-9A-F]{2}", quoted))


@given(st.binary().filter(lambda p: re.search(rb"[\x00-\x1f\x7f%]", p) is None))
def test_safe_bytes_are_sent_as_they_are(path: bytes) -> None:
    """Bytes needing no escape (including UTF-8 and invalid UTF-8) pass unchanged."""
    assert quote(path) == path


def test_escapes_are_upper_case_hex() -> None:
    """Control bytes, DEL and '%' become %XX with upper-case hex digits."""
    assert quote(b"/a%b\tc\x1f\x7f\n\xc3\xa9\xff") == b"/a%25b%09c%1F%7F%0A\xc3\xa9\xff"


def test_unquote_accepts_lower_case_hex() -> None:
    """%1f and %1F both decode to the byte 0x1F."""
    assert unquote(b"%1f%1F%7f%0a") == b"\x1f\x1f\x7f\n"


@pytest.mark.parametrize("field", [b"%", b"/a%", b"%4", b"%zz", b"/a%g0", b"%%", b"% 1"])
def test_bad_escape_is_a_protocol_error(field: bytes) -> None:
    """A '%' not followed by two hex digits raises ProtocolError."""
    with pytest.raises(ProtocolError):
        unquote(field)


@given(st.binary())
def test_unquote_raises_only_protocol_error(field: bytes) -> None:
    """unquote of arbitrary bytes returns bytes or raises ProtocolError, nothing else."""
    try:
        assert isinstance(unquote(field), bytes)
    except ProtocolError:
        pass


COMPONENTS = st.lists(st.sampled_from([b"a", b"ab", b"b", b"a.b", b"\xff"]), max_size=4)


def _path(parts: list[bytes]) -> bytes:
    return b"/" + b"/".join(parts)


@given(COMPONENTS, COMPONENTS)
def test_is_under_compares_whole_components(top: list[bytes], path: list[bytes]) -> None:
    """is_under(path, top) holds exactly when top's components begin path's."""
    assert is_under(_path(path), _path(top)) == (path[: len(top)] == top)


def test_is_under_examples() -> None:
    """A sibling sharing a prefix is not inside; the root holds every absolute path."""
    assert is_under(b"/a/cache/x", b"/a/cache") and is_under(b"/a/cache", b"/a/cache")
    assert not is_under(b"/a/cache2", b"/a/cache") and not is_under(b"/a", b"/a/cache")
    assert is_under(b"/", b"/") and is_under(b"/x/y", b"/")
    assert not is_under(b"relative", b"/")
