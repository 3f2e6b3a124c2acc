"""The server's transition table: every (state, command) row and the contract replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    TABLE,
    BeginInit,
    CheckResume,
    Close,
    Kind,
    ProtocolError,
    ResumeResult,
    Send,
    ServerConversation,
    State,
    Step,
    WantNext,
    client_proof,
    server_proof,
)

SECRET = b"s3cret"
NONCE = "00112233445566778899aabbccddeeff"
CLIENT_NONCE = "c1" * 16
SESSION = "0123456789abcdef0123456789abcdef"
PC = client_proof(SECRET, NONCE, CLIENT_NONCE, b"")
GOOD_AUTH = b"AUTH:%s:%s" % (PC.encode(), CLIENT_NONCE.encode())


def auth_line(proof: str) -> bytes:
    return b"AUTH:%s:%s" % (proof.encode(), CLIENT_NONCE.encode())


PROVEN_OK = b"OK:" + server_proof(SECRET, NONCE, CLIENT_NONCE, b"").encode()

# One sample line per kind of command.
SAMPLE = {
    Kind.START: b"START",
    Kind.AUTH: GOOD_AUTH,
    Kind.INIT: b"INIT",
    Kind.SN: b"SN:" + SESSION.encode() + b",5",
    Kind.NEXT: b"NEXT",
    Kind.INVALID: b"HELLO",
}

# What the contract says each state answers to a command it does not accept.
CONTRACT_REJECT = {
    State.NEW: b"INVALID COMMAND",
    State.CHALLENGED: b"INVALID COMMAND",
    State.STARTED: b"INVALID INIT COMMAND",
    State.RESUMING: b"INVALID REALTIME COMMAND",
    State.STREAMING: b"INVALID REALTIME COMMAND",
    State.REALTIME: b"INVALID REALTIME COMMAND",
    State.WAITING: b"INVALID REALTIME COMMAND",
}


def conversation_in(state: State, secret: bytes | None = SECRET) -> ServerConversation:
    """A conversation driven into ``state`` through its public API only."""
    conv = ServerConversation(secret, NONCE)
    steps = {
        State.NEW: [],
        State.CHALLENGED: [b"START"],
        State.STARTED: [b"START", GOOD_AUTH],
        State.RESUMING: [b"START", GOOD_AUTH, SAMPLE[Kind.SN]],
        State.STREAMING: [b"START", GOOD_AUTH, b"INIT"],
        State.REALTIME: [b"START", GOOD_AUTH, b"INIT"],
        State.WAITING: [b"START", GOOD_AUTH, b"INIT", b"NEXT"],
        State.CLOSED: [b"BYE"],
    }[state]
    for line in steps:
        conv.receive(line)
        if conv.state is State.STREAMING and state is not State.STREAMING:
            conv.init_done()
    assert conv.state is state
    return conv


def test_table_has_a_row_for_every_state_and_kind() -> None:
    """The table is total: no (state, kind) pair is left to a default."""
    assert set(TABLE) == {(s, k) for s in State for k in Kind}


@pytest.mark.parametrize(("state", "kind"), sorted(TABLE, key=lambda p: (p[0].value, p[1].value)))
def test_each_row_behaves_as_the_contract_says(state: State, kind: Kind) -> None:
    """Walk one row: the line leads to a state the row names, with the contract's reply."""
    rule = TABLE[(state, kind)]
    conv = conversation_in(state)
    outputs = conv.receive(SAMPLE[kind])
    assert conv.state in rule.to
    if state is State.CLOSED:
        assert rule.step is Step.IGNORE and outputs == []
    elif rule.step is Step.REJECT:
        assert rule.reply == CONTRACT_REJECT[state]
        assert outputs == [Send(CONTRACT_REJECT[state]), Close()]
        assert conv.state is State.CLOSED
    else:
        assert Close() not in outputs


def test_accepted_rows_are_the_contract_ones() -> None:
    """Only START first, AUTH when challenged, INIT/SN after START and NEXT later are accepted."""
    accepted = {pair for pair, rule in TABLE.items() if rule.step not in (Step.REJECT, Step.IGNORE)}
    assert accepted == {
        (State.NEW, Kind.START),
        (State.CHALLENGED, Kind.AUTH),
        (State.STARTED, Kind.INIT),
        (State.STARTED, Kind.SN),
        (State.RESUMING, Kind.NEXT),
        (State.STREAMING, Kind.NEXT),
        (State.REALTIME, Kind.NEXT),
        (State.WAITING, Kind.NEXT),
    }


def test_start_without_secret_is_ok() -> None:
    """START gets OK when no secret is set."""
    conv = ServerConversation(None, NONCE)
    assert conv.receive(b"START\r") == [Send(b"OK")]
    assert conv.state is State.STARTED


def test_start_with_secret_is_challenged_and_right_auth_is_ok_with_proof() -> None:
    """With a secret START gets CHALLENGE:<Ns>; the right Pc, in either case, gets OK:<Ps>."""
    conv = ServerConversation(SECRET, NONCE)
    assert conv.receive(b"START") == [Send(b"CHALLENGE:" + NONCE.encode())]
    upper = b"AUTH:%s:%s" % (PC.upper().encode(), CLIENT_NONCE.upper().encode())
    assert conv.receive(upper) == [Send(PROVEN_OK)]
    assert conv.state is State.STARTED


@pytest.mark.parametrize(
    "line",
    [
        b"AUTH:",
        b"AUTH:00",
        b"AUTH:" + b"0" * 64,
        b"AUTH:" + PC.encode(),  # the proof without the client's nonce
        GOOD_AUTH + b"0",  # a nonce of 33 digits
        GOOD_AUTH[:-2],  # of 30
        b"AUTH:%s:%s" % (PC.encode(), b"c2" * 16),  # another nonce than the one proven
        b"AUTH:%s:%s" % (PC.encode()[:-1], CLIENT_NONCE.encode()),
        auth_line(client_proof(b"other", NONCE, CLIENT_NONCE, b"")),  # another secret
        auth_line(server_proof(SECRET, NONCE, CLIENT_NONCE, b"")),  # the server's proof
    ],
)  # fmt: skip
def test_wrong_auth_fails_and_closes(line: bytes) -> None:
    """A wrong or malformed proof or nonce gets AUTH FAILED and a close, and no proof of ours."""
    conv = conversation_in(State.CHALLENGED)
    assert conv.receive(line) == [Send(b"AUTH FAILED"), Close()]
    assert conv.state is State.CLOSED


def test_auth_covers_the_channel_binding() -> None:
    """Pc and Ps include the binding: a proof made over another channel gets AUTH FAILED."""
    mine, relayed = b"\x01" * 32, b"\x02" * 32
    good = client_proof(SECRET, NONCE, CLIENT_NONCE, mine)
    other = client_proof(SECRET, NONCE, CLIENT_NONCE, relayed)
    conv = ServerConversation(SECRET, NONCE, mine)
    conv.receive(b"START")
    assert conv.receive(b"AUTH:%s:%s" % (other.encode(), CLIENT_NONCE.encode())) == [
        Send(b"AUTH FAILED"),
        Close(),
    ]
    conv = ServerConversation(SECRET, NONCE, mine)
    conv.receive(b"START")
    ps = server_proof(SECRET, NONCE, CLIENT_NONCE, mine)
    assert conv.receive(b"AUTH:%s:%s" % (good.encode(), CLIENT_NONCE.encode())) == [
        Send(b"OK:" + ps.encode())
    ]


def test_a_binding_callable_is_asked_only_when_the_auth_arrives() -> None:
    """A callable binding is read at AUTH time (the TLS handshake is done by then)."""
    asked: list[int] = []

    def binding() -> bytes:
        asked.append(1)
        return b"\x07" * 32

    conv = ServerConversation(SECRET, NONCE, binding)
    conv.receive(b"START")
    assert asked == []
    pc = client_proof(SECRET, NONCE, CLIENT_NONCE, b"\x07" * 32)
    [reply] = conv.receive(b"AUTH:%s:%s" % (pc.encode(), CLIENT_NONCE.encode()))
    assert asked == [1] and reply == Send(
        b"OK:" + server_proof(SECRET, NONCE, CLIENT_NONCE, b"\x07" * 32).encode()
    )


def test_init_then_next_then_batches() -> None:
    """INIT asks for the stream; after it NEXT asks for a batch; batch_sent waits for NEXT."""
    conv = conversation_in(State.STARTED)
    assert conv.receive(b"INIT") == [BeginInit()]
    assert conv.init_done() == []
    assert conv.state is State.REALTIME
    assert conv.receive(b"NEXT") == [WantNext()]
    assert conv.batch_sent() == []
    assert conv.state is State.REALTIME


def test_next_during_stream_is_held_until_init_done() -> None:
    """One NEXT sent early is kept and released when the stream ends."""
    conv = conversation_in(State.STREAMING)
    assert conv.receive(b"NEXT") == []
    assert conv.init_done() == [WantNext()]
    assert conv.state is State.WAITING
    assert conv.receive(b"NEXT") == []
    assert conv.batch_sent() == [WantNext()]
    assert conv.batch_sent() == []
    assert conv.state is State.REALTIME


def test_second_held_next_is_refused() -> None:
    """More than one NEXT ahead is a protocol error: INVALID REALTIME COMMAND and close."""
    conv = conversation_in(State.WAITING)
    assert conv.receive(b"NEXT") == []
    assert conv.receive(b"NEXT") == [Send(b"INVALID REALTIME COMMAND"), Close()]
    assert conv.batch_sent() == []


def test_resume_ok() -> None:
    """SN asks the adapter to check; OK answers OK and a held NEXT is then served."""
    conv = conversation_in(State.STARTED)
    assert conv.receive(b"SN:" + SESSION.encode() + b",42") == [CheckResume(SESSION, 42)]
    assert conv.receive(b"NEXT") == []
    assert conv.resume_checked(ResumeResult.OK) == [Send(b"OK"), WantNext()]
    assert conv.state is State.WAITING


@pytest.mark.parametrize(
    ("result", "reply"),
    [
        (ResumeResult.UNKNOWN_SESSION, b"SESSION INVALID"),
        (ResumeResult.SERIAL_OUT_OF_RANGE, b"SERIAL OVERDUE OR INVALID"),
    ],
)
def test_resume_refused_keeps_connection_for_init(result: ResumeResult, reply: bytes) -> None:
    """A refused SN is answered without closing, and the client may then INIT."""
    conv = conversation_in(State.RESUMING)
    assert conv.resume_checked(result) == [Send(reply)]
    assert conv.state is State.STARTED
    assert conv.receive(b"INIT") == [BeginInit()]
    assert conv.init_done() == []  # a NEXT held before the refusal was dropped


def test_blank_line_is_an_invalid_command() -> None:
    """An empty line first gets INVALID COMMAND and a close."""
    conv = ServerConversation(None, NONCE)
    assert conv.receive(b"") == [Send(b"INVALID COMMAND"), Close()]


def test_protocol_error_from_the_line_buffer_answers_and_closes() -> None:
    """An over-long line reported by the adapter is answered with its reply and a close."""
    conv = conversation_in(State.REALTIME)
    assert conv.protocol_error(ProtocolError()) == [Send(b"INVALID COMMAND"), Close()]
    assert conv.protocol_error(ProtocolError()) == []
    other = conversation_in(State.REALTIME)
    assert other.protocol_error(ProtocolError(b"HUH", close=False)) == [Send(b"HUH")]
    assert other.protocol_error(ProtocolError(None, close=False)) == []


def test_adapter_calls_in_the_wrong_state_raise() -> None:
    """init_done, batch_sent and resume_checked outside their state are adapter bugs."""
    conv = conversation_in(State.REALTIME)
    with pytest.raises(RuntimeError):
        conv.init_done()
    with pytest.raises(RuntimeError):
        conv.batch_sent()
    with pytest.raises(RuntimeError):
        conv.resume_checked(ResumeResult.OK)


def test_adapter_calls_after_close_do_nothing() -> None:
    """A stream finishing after the client was cut off produces no output."""
    conv = conversation_in(State.CLOSED)
    assert conv.init_done() == conv.batch_sent() == conv.resume_checked(ResumeResult.OK) == []


@pytest.mark.parametrize("nonce", ["xyz", "00", "00" * 17, ""])
def test_bad_nonce_is_refused_at_construction(nonce: str) -> None:
    """The nonce must be 32 hex digits."""
    with pytest.raises(ValueError):
        ServerConversation(SECRET, nonce)


@given(st.lists(st.one_of(st.binary(max_size=20), st.sampled_from(list(SAMPLE.values())))))
def test_any_line_sequence_is_handled(lines: list[bytes]) -> None:
    """No line sequence raises; nothing is output after Close; sent lines have no line breaks."""
    conv = ServerConversation(SECRET, NONCE)
    closed = False
    for line in lines:
        outputs = conv.receive(line)
        if conv.state is State.STREAMING:
            outputs += conv.init_done()
        if conv.state is State.RESUMING:
            outputs += conv.resume_checked(ResumeResult.OK)
        if conv.state is State.WAITING:
            outputs += conv.batch_sent()
        if closed:
            assert outputs == []
        for out in outputs:
            if isinstance(out, Send):
                assert b"\n" not in out.line and b"\r" not in out.line
        closed = closed or Close() in outputs
    assert closed == (conv.state is State.CLOSED)
