"""Commands and replies: exact wire forms, strict parsing, and no stray exceptions."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    AUTH_FAILED,
    INVALID_COMMAND,
    INVALID_INIT_COMMAND,
    INVALID_REALTIME_COMMAND,
    SERIAL_OVERDUE,
    SESSION_INVALID,
    Action,
    Auth,
    Challenge,
    Eof,
    ErrorReply,
    Init,
    Next,
    Ok,
    ProtocolError,
    Record,
    Resume,
    Serial,
    SessionId,
    Start,
    client_proof,
    encode_line,
    is_nonce,
    parse_command,
    parse_server_line,
    server_proof,
)
from protocol.messages import EOF_LINE, batch_lines, init_head, server_lines

SESSIONS = st.text("0123456789abcdef", min_size=32, max_size=32)
SERIALS = st.integers(min_value=0, max_value=2**63)
HEX = st.binary(min_size=1, max_size=32).map(bytes.hex)
NONCES = st.binary(min_size=16, max_size=16).map(bytes.hex)
PROOFS = st.binary(min_size=32, max_size=32).map(bytes.hex)
COMMANDS = st.one_of(
    st.just(Start()),
    st.just(Init()),
    st.just(Next()),
    st.builds(Resume, SESSIONS, SERIALS),
    st.builds(Auth, PROOFS, NONCES),
    st.builds(Auth, HEX, st.just("")),
)
REPLIES = st.one_of(
    st.just(Ok()),
    st.builds(Ok, PROOFS),
    st.just(Eof()),
    st.builds(Challenge, NONCES),
    st.builds(SessionId, SESSIONS),
    st.builds(Serial, SERIALS),
)
ERRORS = [
    INVALID_COMMAND,
    INVALID_INIT_COMMAND,
    SESSION_INVALID,
    SERIAL_OVERDUE,
    INVALID_REALTIME_COMMAND,
    AUTH_FAILED,
]


def test_error_texts_are_the_contract_ones() -> None:
    """The six error constants spell the contract's replies exactly."""
    assert ERRORS == [
        b"INVALID COMMAND",
        b"INVALID INIT COMMAND",
        b"SESSION INVALID",
        b"SERIAL OVERDUE OR INVALID",
        b"INVALID REALTIME COMMAND",
        b"AUTH FAILED",
    ]


def test_command_wire_forms() -> None:
    """Each command encodes to the line the contract shows."""
    assert [c.encode() for c in (Start(), Init(), Next())] == [b"START", b"INIT", b"NEXT"]
    assert Resume("ab12", 42).encode() == b"SN:ab12,42"
    assert Auth("00ff", "a0" * 16).encode() == b"AUTH:00ff:" + b"a0" * 16


@given(COMMANDS)
def test_commands_round_trip(command: object) -> None:
    """parse_command(c.encode()) == c for every command."""
    assert parse_command(command.encode()) == command  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "auth"),
    [
        (b"AUTH:", Auth("", "")),
        (b"AUTH:00ff", Auth("00ff", "")),
        (b"AUTH:00ff:", Auth("00ff", "")),
        (b"AUTH:00ff:zz", Auth("00ff", "zz")),
        (b"AUTH::a0", Auth("", "a0")),
        (b"AUTH:a:b:c", Auth("a", "b:c")),
    ],
)
def test_malformed_auth_is_still_an_auth(line: bytes, auth: Auth) -> None:
    """An AUTH with missing or malformed fields is an AUTH (that earns AUTH FAILED)."""
    assert parse_command(line) == auth


@pytest.mark.parametrize("line", [b"START ", b"START\r", b"START \r  ", b"START\r\r"])
def test_trailing_spaces_and_cr_are_ignored(line: bytes) -> None:
    """A telnet user's trailing blanks or CR do not change the command."""
    assert parse_command(line) == Start()


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b" ",
        b"start",
        b" START",
        b"START\t",
        b"STARTX",
        b"SN",
        b"AUTH",
        b"AUTH:\xff",
        b"AUTH:a b",
        b"NEXT:1",
        b"SERIAL:1",
    ],
)
def test_non_commands_are_none(line: bytes) -> None:
    """Blank, lower-case, malformed or unknown lines are not commands."""
    assert parse_command(line) is None


@pytest.mark.parametrize(
    ("line", "resume"),
    [
        (b"SN:", Resume("", 0)),
        (b"SN:abc", Resume("", 0)),
        (b"SN:,5", Resume("", 0)),
        (b"SN:a-c,1", Resume("", 0)),
        (b"SN:abc,", Resume("abc", -1)),
        (b"SN:abc,x", Resume("abc", -1)),
        (b"SN:abc,-1", Resume("abc", -1)),
        (b"SN:abc,1,2", Resume("abc", -1)),
        (b"SN:abc," + b"9" * 21, Resume("abc", -1)),
    ],
)
def test_malformed_sn_is_an_sn_that_cannot_match(line: bytes, resume: Resume) -> None:
    """A malformed SN names no known session (SESSION INVALID) or no serial in range."""
    assert parse_command(line) == resume


@given(st.binary())
def test_parse_command_never_raises(line: bytes) -> None:
    """parse_command of any bytes returns a command or None."""
    result = parse_command(line)
    assert result is None or parse_command(result.encode()) == result


def test_reply_wire_forms() -> None:
    """Each reply encodes to the line the contract shows."""
    assert Ok().encode() == b"OK"
    assert Ok("5b" * 32).encode() == b"OK:" + b"5b" * 32
    assert Eof().encode() == b"EOF"
    assert Challenge("0a1b").encode() == b"CHALLENGE:0a1b"
    assert SessionId("f" * 32).encode() == b"SESSION:" + b"f" * 32
    assert Serial(17).encode() == b"SERIAL:17"
    assert ErrorReply(SESSION_INVALID).encode() == b"SESSION INVALID"


@given(REPLIES)
def test_replies_round_trip(reply: object) -> None:
    """parse_server_line(r.encode()) == r for every reply."""
    assert parse_server_line(reply.encode()) == reply  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ERRORS)
def test_error_lines_parse_as_error_replies(text: bytes) -> None:
    """Each contract error line is an ErrorReply carrying its text."""
    assert parse_server_line(text) == ErrorReply(text)


def test_record_lines_parse_as_records() -> None:
    """A record line from the server parses as that Record."""
    assert parse_server_line(b"CREATE:/var/www") == Record(Action.CREATE, b"/var/www")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"ok",
        b"OK ",
        b"SERIAL:",
        b"SERIAL:x",
        b"SERIAL:-1",
        b"SESSION:",
        b"SESSION:a b",
        b"CHALLENGE:abc",
        b"CHALLENGE:zz",
        b"CHALLENGE:",
        b"CHALLENGE:" + b"a0" * 15,
        b"CHALLENGE:" + b"a0" * 17,
        b"OK:",
        b"OK:00ff",
        b"OK:" + b"g" * 64,
        b"OK:" + b"0" * 65,
        b"Some error",
        b"EOF\r",
        b"FOO:bar",
    ],
)
def test_bad_server_lines_are_protocol_errors(line: bytes) -> None:
    """Malformed replies and unknown lines raise ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_server_line(line)


@given(st.binary())
def test_parse_server_line_raises_only_protocol_error(line: bytes) -> None:
    """parse_server_line of any bytes returns a value or raises ProtocolError, nothing else."""
    try:
        value = parse_server_line(line)
    except ProtocolError:
        return
    assert parse_server_line(value.encode()) == value


def test_proofs_are_hmac_sha256_of_role_nonces_and_binding() -> None:
    """Pc and Ps are HMAC-SHA256(secret, role + NUL + Ns + Nc + B), nonces as raw bytes."""
    ns, nc, binding = "00" * 15 + "ff", "a0" * 16, bytes(range(32))
    for role, proof in ((b"mirror-client", client_proof), (b"mirror-server", server_proof)):
        message = role + b"\0" + b"\0" * 15 + b"\xff" + b"\xa0" * 16 + binding
        assert proof(b"k3y", ns, nc, binding) == hmac.new(b"k3y", message, sha256).hexdigest()
    assert client_proof(b"k3y", ns, nc, b"") != server_proof(b"k3y", ns, nc, b"")
    assert client_proof(b"k3y", ns, nc, b"") != client_proof(b"k3y", ns, nc, binding)


@pytest.mark.parametrize(
    ("text", "valid"),
    [("a0" * 16, True), ("A0" * 16, True), ("a0" * 15, False), ("a0" * 17, False),
     ("", False), ("zz" * 16, False), ("é" * 32, False)],
)  # fmt: skip
def test_a_nonce_is_32_hex_digits(text: str, valid: bool) -> None:
    """is_nonce accepts exactly 32 hex digits, in either case."""
    assert is_nonce(text) is valid


def test_encode_line_terminators() -> None:
    """Server lines end with CRLF, client lines with LF; a line break inside is refused."""
    assert encode_line(b"OK") == b"OK\r\n"
    assert encode_line(b"NEXT", server=False) == b"NEXT\n"
    with pytest.raises(ValueError):
        encode_line(b"OK\r\nEOF")


def test_init_head_is_session_then_serial() -> None:
    """An INIT stream starts with SESSION:<id> and SERIAL:<S>, each CRLF-ended."""
    assert init_head("ab" * 16, 7) == b"SESSION:" + b"ab" * 16 + b"\r\nSERIAL:7\r\n"


@given(SERIALS, st.lists(st.sampled_from([b"CREATE:/d", b"FWRITE:/d/%25f", b"DELETE:/x"])))
def test_batch_lines_parse_back_as_serial_records_eof(serial: int, records: list[bytes]) -> None:
    """A NEXT answer reads back, line by line, as Serial, the records in order, then Eof."""
    data = batch_lines(serial, records)
    assert data.endswith(EOF_LINE) and EOF_LINE == b"EOF\r\n"
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    parsed = [parse_server_line(line) for line in lines[:-1]]
    assert parsed == [Serial(serial), *map(Record.decode, records), Eof()]


def test_server_lines_end_each_record_with_crlf() -> None:
    """Records are written one a line with CRLF; none at all is no bytes."""
    assert server_lines([b"CREATE:/a", b"FWRITE:/a/b"]) == b"CREATE:/a\r\nFWRITE:/a/b\r\n"
    assert server_lines([]) == b""
