"""The client conversation, alone and talking to the server conversation through lines."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    Action,
    BatchFinished,
    BatchStarted,
    BeginInit,
    CheckResume,
    ClientConversation,
    ClientEvent,
    ClientState,
    Close,
    Failed,
    InitFinished,
    InitStarted,
    LineBuffer,
    Meta,
    Output,
    ProtocolError,
    Record,
    RecordReceived,
    Resumed,
    ResumeRefused,
    ResumeResult,
    Send,
    SendLine,
    ServerConversation,
    State,
    WantNext,
    client_proof,
    encode_line,
    server_proof,
)

SESSION = "0123456789abcdef0123456789abcdef"
NONCE = "a0" * 16
CLIENT_NONCE = "c1" * 16
CHUNK = 7  # bytes per delivery, so lines arrive split across chunks


def rec(action: Action, path: bytes, target: bytes | None = None) -> Record:
    return Record(action, path, target, Meta(mode=0o644, mtime_ns=1_700_000_000_500_000_000))


SNAPSHOT = [
    rec(Action.CREATE, b"/w"),
    rec(Action.FWRITE, b"/w/caf\xc3\xa9 %.txt"),
    rec(Action.SYMLINK, b"/w/l", b"caf\xc3\xa9 %.txt"),
]
LOG = [rec(Action.FWRITE, b"/w/%d" % i) for i in range(1, 4)]
LATER = [
    rec(Action.MOVE, b"/w/1", b"/w/\tmoved"),
    rec(Action.DELETE, b"/w/2"),
    rec(Action.CREATE, b"/w/d\xff"),
]


@dataclass
class Worker:
    """What the server adapter would look up: the session, snapshot and retained log."""

    snapshot: list[Record]
    log: list[Record]  # log[i] has serial i + 1
    oldest: int = 1
    batch: int = 2

    def check(self, session: str, serial: int) -> ResumeResult:
        if session != SESSION:
            return ResumeResult.UNKNOWN_SESSION
        if not self.oldest - 1 <= serial <= len(self.log):
            return ResumeResult.SERIAL_OUT_OF_RANGE
        return ResumeResult.OK


@dataclass
class ServerSide:
    """A pure stand-in for the Twisted adapter: runs the outputs against a Worker."""

    worker: Worker
    conv: ServerConversation
    buffer: LineBuffer = field(default_factory=LineBuffer)
    wire: bytearray = field(default_factory=bytearray)
    closed: bool = False
    serial: int = 0
    waiting: bool = False

    def data_received(self, data: bytes) -> None:
        try:
            lines = self.buffer.feed(data)
        except ProtocolError as e:
            self.run(self.conv.protocol_error(e))
            return
        for line in lines:
            self.run(self.conv.receive(line))

    def send(self, line: bytes) -> None:
        self.wire += encode_line(line)

    def run(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.send(out.line)
            elif isinstance(out, Close):
                self.closed = True
            elif isinstance(out, BeginInit):
                self.serial = len(self.worker.log)
                self.send(b"SESSION:" + SESSION.encode())
                self.send(b"SERIAL:%d" % self.serial)
                for record in self.worker.snapshot:
                    self.send(record.encode())
                self.send(b"EOF")
                self.run(self.conv.init_done())
            elif isinstance(out, CheckResume):
                result = self.worker.check(out.session, out.serial)
                if result is ResumeResult.OK:
                    self.serial = out.serial
                self.run(self.conv.resume_checked(result))
            elif isinstance(out, WantNext):
                self.waiting = True
                self.wake()

    def wake(self) -> None:
        """Serve a parked NEXT if the log has records after the client's serial."""
        head = len(self.worker.log)
        if not self.waiting or self.serial >= head:
            return
        self.waiting = False
        end = min(head, self.serial + self.worker.batch)
        self.send(b"SERIAL:%d" % end)
        for record in self.worker.log[self.serial : end]:
            self.send(record.encode())
        self.send(b"EOF")
        self.serial = end
        self.run(self.conv.batch_sent())


@dataclass
class ClientSide:
    """fs_mirror's use of the conversation: records events and asks for the next batch."""

    conv: ClientConversation
    buffer: LineBuffer = field(default_factory=LineBuffer)
    wire: bytearray = field(default_factory=bytearray)
    events: list[ClientEvent] = field(default_factory=list)

    def connect(self) -> None:
        for line in self.conv.start():
            self.wire += encode_line(line, server=False)

    def data_received(self, data: bytes) -> None:
        for line in self.buffer.feed(data):
            for event in self.conv.receive(line):
                self.events.append(event)
                if isinstance(event, SendLine):
                    self.wire += encode_line(event.line, server=False)
                elif isinstance(event, InitFinished | Resumed | BatchFinished):
                    self.wire += encode_line(self.conv.next(), server=False)


def pump(server: ServerSide, client: ClientSide) -> None:
    """Move bytes both ways, CHUNK at a time, until neither side has anything to say."""
    while (client.wire and not server.closed) or server.wire:
        if client.wire and not server.closed:
            server.data_received(bytes(client.wire[:CHUNK]))
            del client.wire[:CHUNK]
        if server.wire:
            client.data_received(bytes(server.wire[:CHUNK]))
            del server.wire[:CHUNK]


def pair(
    resume: tuple[str, int] | None = None,
    server_secret: bytes | None = None,
    client_secret: bytes | None = None,
    server_binding: bytes = b"",
    client_binding: bytes = b"",
) -> tuple[ServerSide, ClientSide]:
    server = ServerSide(
        Worker(SNAPSHOT, list(LOG)), ServerConversation(server_secret, NONCE, server_binding)
    )
    client = ClientSide(ClientConversation(client_secret, resume, CLIENT_NONCE, client_binding))
    client.connect()
    pump(server, client)
    return server, client


def without_sends(events: list[ClientEvent]) -> list[ClientEvent]:
    return [e for e in events if not isinstance(e, SendLine)]


INIT_EVENTS: list[ClientEvent] = [
    InitStarted(SESSION, 3),
    *[RecordReceived(r) for r in SNAPSHOT],
    InitFinished(SESSION, 3),
]


def test_init_then_realtime_batches() -> None:
    """INIT streams the snapshot; later records arrive as batches of at most `batch` records."""
    server, client = pair()
    assert [e.line for e in client.events if isinstance(e, SendLine)] == [b"INIT"]
    assert without_sends(client.events) == INIT_EVENTS
    assert server.conv.state is State.WAITING  # the client's NEXT is parked
    server.worker.log.extend(LATER)
    server.wake()
    pump(server, client)
    assert without_sends(client.events)[len(INIT_EVENTS) :] == [
        BatchStarted(5),
        RecordReceived(LATER[0]),
        RecordReceived(LATER[1]),
        BatchFinished(5),
        BatchStarted(6),
        RecordReceived(LATER[2]),
        BatchFinished(6),
    ]
    assert (client.conv.session, client.conv.serial) == (SESSION, 6)


def test_resume_ok_continues_from_the_serial() -> None:
    """SN with a known session and serial gets OK and then the records after that serial."""
    server, client = pair(resume=(SESSION, 1))
    assert client.events[0] == SendLine(b"SN:" + SESSION.encode() + b",1")
    assert without_sends(client.events) == [
        Resumed(SESSION, 1),
        BatchStarted(3),
        RecordReceived(LOG[1]),
        RecordReceived(LOG[2]),
        BatchFinished(3),
    ]
    assert not server.closed


@pytest.mark.parametrize(
    ("resume", "reason"),
    [(("f" * 32, 1), "SESSION INVALID"), ((SESSION, 99), "SERIAL OVERDUE OR INVALID")],
)
def test_refused_resume_falls_back_to_init(resume: tuple[str, int], reason: str) -> None:
    """A refused SN is reported, and the client sends INIT on the same connection."""
    server, client = pair(resume=resume)
    assert without_sends(client.events) == [ResumeRefused(reason), *INIT_EVENTS]
    assert b"INIT" in [e.line for e in client.events if isinstance(e, SendLine)]
    assert not server.closed


def test_auth_ok() -> None:
    """With the same secret both sides prove it, the client first, and the client gets its INIT."""
    server, client = pair(server_secret=b"k3y", client_secret=b"k3y")
    pc = client_proof(b"k3y", NONCE, CLIENT_NONCE, b"")
    assert client.events[0] == SendLine(b"AUTH:%s:%s" % (pc.encode(), CLIENT_NONCE.encode()))
    assert without_sends(client.events) == INIT_EVENTS


def test_auth_ok_over_the_same_channel() -> None:
    """Both sides holding the same channel binding authenticate as without one."""
    _, client = pair(
        server_secret=b"k3y",
        client_secret=b"k3y",
        server_binding=b"B" * 32,
        client_binding=b"B" * 32,
    )
    assert without_sends(client.events) == INIT_EVENTS


def test_relayed_auth_fails_at_the_server() -> None:
    """Bindings that differ (a relay between two TLS connections): the server says AUTH FAILED."""
    server, client = pair(
        server_secret=b"k3y",
        client_secret=b"k3y",
        server_binding=b"S" * 32,
        client_binding=b"C" * 32,
    )
    assert without_sends(client.events) == [Failed("server said AUTH FAILED", fatal=True)]
    assert server.closed


def test_auth_failed() -> None:
    """A wrong secret gets AUTH FAILED: the client fails and the server closes."""
    server, client = pair(server_secret=b"k3y", client_secret=b"other")
    assert without_sends(client.events) == [Failed("server said AUTH FAILED", fatal=True)]
    assert server.closed
    assert client.conv.state is ClientState.FAILED


def test_challenge_without_secret_fails() -> None:
    """A client with no secret cannot answer a challenge and says so."""
    _, client = pair(server_secret=b"k3y")
    [event] = client.events
    assert isinstance(event, Failed) and "secret" in event.reason


def test_refused_credentials_are_fatal_other_failures_are_not() -> None:
    """AUTH FAILED and a challenge without a secret are fatal; a bad or unexpected line is not."""
    _, refused = pair(server_secret=b"k3y", client_secret=b"other")
    _, no_secret = pair(server_secret=b"k3y")
    assert [e.fatal for e in refused.events if isinstance(e, Failed)] == [True]
    assert [e.fatal for e in no_secret.events if isinstance(e, Failed)] == [True]
    for line in (b"INVALID INIT COMMAND", b"EOF", b"\x01garbage"):
        conv = ClientConversation(None, None)
        conv.start()
        [event] = conv.receive(line)
        assert isinstance(event, Failed) and not event.fatal, (line, event)


def test_client_with_secret_refuses_a_server_that_does_not_challenge() -> None:
    """A plain OK to START, when we hold a secret, fails before INIT: not fatal, retried."""
    server, client = pair(client_secret=b"k3y")
    assert [e.line for e in client.events if isinstance(e, SendLine)] == []
    [failed] = without_sends(client.events)
    assert isinstance(failed, Failed) and not failed.fatal and "plain OK" in failed.reason
    assert client.conv.receive(b"SESSION:" + SESSION.encode()) == []


def authenticating(secret: bytes = b"k3y", binding: bytes = b"") -> ClientConversation:
    conv = ClientConversation(secret, None, CLIENT_NONCE, binding)
    conv.start()
    [auth] = conv.receive(b"CHALLENGE:" + NONCE.encode())
    assert isinstance(auth, SendLine) and auth.line.startswith(b"AUTH:")
    return conv


@pytest.mark.parametrize(
    "reply",
    [
        b"OK",  # our proof accepted without proving anything back
        b"OK:" + b"0" * 64,
        b"OK:" + server_proof(b"other", NONCE, CLIENT_NONCE, b"").encode(),
        b"OK:" + client_proof(b"k3y", NONCE, CLIENT_NONCE, b"").encode(),  # ours reflected
        b"OK:" + server_proof(b"k3y", NONCE, "c2" * 16, b"").encode(),  # for another nonce
        b"OK:" + server_proof(b"k3y", NONCE, CLIENT_NONCE, b"B" * 32).encode(),  # another channel
    ],
)
def test_client_refuses_a_server_proof_that_does_not_verify(reply: bytes) -> None:
    """After AUTH only OK:<Ps> with the right Ps goes on; anything else fails, not fatally."""
    conv = authenticating()
    [failed] = conv.receive(reply)
    assert isinstance(failed, Failed) and not failed.fatal
    assert conv.state is ClientState.FAILED


def test_client_accepts_the_right_server_proof_in_either_case() -> None:
    """OK:<Ps> (upper or lower case hex) is followed by INIT."""
    conv = authenticating(binding=b"B" * 32)
    ps = server_proof(b"k3y", NONCE, CLIENT_NONCE, b"B" * 32)
    assert conv.receive(b"OK:" + ps.upper().encode()) == [SendLine(b"INIT")]


def test_client_binding_callable_is_asked_when_challenged() -> None:
    """A callable binding is read once, when the CHALLENGE arrives, never at construction."""
    asked: list[int] = []

    def binding() -> bytes:
        asked.append(1)
        return b"B" * 32

    conv = ClientConversation(b"k3y", None, CLIENT_NONCE, binding)
    conv.start()
    assert asked == []
    [auth] = conv.receive(b"CHALLENGE:" + NONCE.encode())
    pc = client_proof(b"k3y", NONCE, CLIENT_NONCE, b"B" * 32)
    assert auth == SendLine(b"AUTH:%s:%s" % (pc.encode(), CLIENT_NONCE.encode()))
    assert asked == [1]


def test_a_client_with_a_secret_needs_a_nonce() -> None:
    """Constructing a client with a secret but no 32-hex-digit nonce is a caller bug."""
    with pytest.raises(ValueError):
        ClientConversation(b"k3y", None)
    ClientConversation(None, None)  # without a secret no nonce is needed


def client_in(state: ClientState) -> ClientConversation:
    conv = ClientConversation(None, None)
    conv.start()
    script = {
        ClientState.STARTING: [],
        ClientState.INIT_SESSION: [b"OK"],
        ClientState.INIT_SERIAL: [b"OK", b"SESSION:" + SESSION.encode()],
        ClientState.INIT_STREAM: [b"OK", b"SESSION:" + SESSION.encode(), b"SERIAL:5"],
        ClientState.IDLE: [b"OK", b"SESSION:" + SESSION.encode(), b"SERIAL:5", b"EOF"],
    }.get(state, [b"OK", b"SESSION:" + SESSION.encode(), b"SERIAL:5", b"EOF"])
    for line in script:
        conv.receive(line)
    if state in (ClientState.BATCH_HEAD, ClientState.BATCH):
        conv.next()
    if state is ClientState.BATCH:
        conv.receive(b"SERIAL:7")
    assert conv.state is state
    return conv


@pytest.mark.parametrize(
    ("state", "line"),
    [
        (ClientState.STARTING, b"EOF"),
        (ClientState.STARTING, b"CREATE:/x"),
        (ClientState.STARTING, b"garbage"),
        (ClientState.INIT_SESSION, b"SERIAL:1"),
        (ClientState.INIT_SESSION, b"INVALID INIT COMMAND"),
        (ClientState.INIT_SERIAL, b"CREATE:/x"),
        (ClientState.INIT_STREAM, b"SERIAL:6"),
        (ClientState.INIT_STREAM, b"MOVE:/only-one-path"),
        (ClientState.IDLE, b"SERIAL:9"),
        (ClientState.BATCH_HEAD, b"CREATE:/x"),
        (ClientState.BATCH, b"SESSION INVALID"),
    ],
)
def test_unexpected_lines_fail(state: ClientState, line: bytes) -> None:
    """A line the state does not expect gives Failed, after which lines are ignored."""
    conv = client_in(state)
    [event] = conv.receive(line)
    assert isinstance(event, Failed)
    assert conv.state is ClientState.FAILED
    assert conv.receive(b"OK") == []


def test_server_error_reply_is_named_in_the_reason() -> None:
    """An error line from the server is quoted in Failed.reason."""
    conv = client_in(ClientState.INIT_SESSION)
    assert conv.receive(b"INVALID INIT COMMAND") == [Failed("server said INVALID INIT COMMAND")]


def test_resume_reply_other_than_ok_or_refusal_fails() -> None:
    """In reply to SN only OK, SESSION INVALID or SERIAL OVERDUE OR INVALID are expected."""
    conv = ClientConversation(None, (SESSION, 3))
    conv.start()
    assert conv.receive(b"OK") == [SendLine(b"SN:" + SESSION.encode() + b",3")]
    [event] = conv.receive(b"INVALID REALTIME COMMAND")
    assert isinstance(event, Failed)


def test_auth_reply_other_than_ok_fails() -> None:
    """After AUTH anything but OK fails."""
    conv = authenticating(b"k")
    assert conv.receive(b"EOF") == [Failed("unexpected line in state AUTHENTICATING: b'EOF'")]


def test_serial_going_backwards_fails() -> None:
    """A batch serial lower than the one already reached is refused."""
    conv = client_in(ClientState.IDLE)
    assert conv.next() == b"NEXT"
    [event] = conv.receive(b"SERIAL:4")
    assert isinstance(event, Failed) and "back" in event.reason


def test_misuse_raises() -> None:
    """start() twice or next() while not idle are caller bugs."""
    conv = client_in(ClientState.STARTING)
    with pytest.raises(RuntimeError):
        conv.start()
    with pytest.raises(RuntimeError):
        conv.next()


SERVER_LINES = st.one_of(
    st.binary(max_size=30),
    st.sampled_from(
        [
            b"OK",
            b"EOF",
            b"SESSION:" + SESSION.encode(),
            b"SERIAL:3",
            b"SERIAL:9",
            b"CHALLENGE:" + NONCE.encode(),
            b"OK:" + server_proof(b"k", NONCE, CLIENT_NONCE, b"").encode(),
            b"SESSION INVALID",
            b"CREATE:/x",
            b"MOVE:/a\t/b",
        ]
    ),
)


@given(st.lists(SERVER_LINES), st.none() | st.just((SESSION, 3)), st.none() | st.just(b"k"))
def test_any_server_lines_are_handled(
    lines: list[bytes], resume: tuple[str, int] | None, secret: bytes | None
) -> None:
    """No sequence of server lines raises; once Failed, nothing more is reported."""
    conv = ClientConversation(secret, resume, CLIENT_NONCE)
    conv.start()
    failed = False
    for line in lines:
        events = conv.receive(line)
        if failed:
            assert events == []
        failed = failed or any(isinstance(e, Failed) for e in events)
        if conv.state is ClientState.IDLE:
            conv.next()
    assert failed == (conv.state is ClientState.FAILED)
