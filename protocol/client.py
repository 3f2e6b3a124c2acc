"""The client side of the conversation (fs_mirror's), without I/O.

``start()`` gives the first line; each server line goes to ``receive`` and
comes back as events: lines to send, and the facts fs_mirror acts on (init
started, a record, a batch finished...). The conversation answers the
handshake itself (AUTH, SN or INIT, and INIT again when a resume is
refused); the caller only decides when to ask for the next batch, with
``next()``, after it has applied the previous one.

With a secret the client trusts no server that has not proven it knows the
secret too (contract 2.1): a plain ``OK`` to START, or an ``OK:<Ps>`` whose
proof does not verify, fails the conversation before anything is asked
for.  That failure is not fatal (the next server answering may be the real
one); only the server refusing our own proof is.  The caller supplies the
nonce and the channel binding, as ``ServerConversation`` does.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from protocol.errors import ProtocolError
from protocol.messages import (
    AUTH_FAILED,
    SERIAL_OVERDUE,
    SESSION_INVALID,
    Auth,
    Binding,
    Challenge,
    Eof,
    ErrorReply,
    Init,
    Next,
    Ok,
    Reply,
    Resume,
    Serial,
    SessionId,
    Start,
    binding_bytes,
    client_proof,
    is_nonce,
    parse_server_line,
    server_proof,
)
from protocol.records import Record

__all__ = [
    "BatchFinished",
    "BatchStarted",
    "ClientConversation",
    "ClientEvent",
    "ClientState",
    "Failed",
    "InitFinished",
    "InitStarted",
    "RecordReceived",
    "ResumeRefused",
    "Resumed",
    "SendLine",
]


@dataclass(frozen=True)
class SendLine:
    line: bytes  # without terminator


@dataclass(frozen=True)
class InitStarted:
    session: str
    serial: int


@dataclass(frozen=True)
class RecordReceived:
    record: Record


@dataclass(frozen=True)
class InitFinished:
    session: str
    serial: int


@dataclass(frozen=True)
class BatchStarted:
    serial: int


@dataclass(frozen=True)
class BatchFinished:
    serial: int


@dataclass(frozen=True)
class ResumeRefused:
    reason: str


@dataclass(frozen=True)
class Resumed:
    session: str
    serial: int


@dataclass(frozen=True)
class Failed:
    """The conversation is over; ``fatal`` when trying again cannot help.

    Fatal means the server refused our credentials (``AUTH FAILED``) or asks
    for a secret we do not have: the operator must act.  Anything else (a
    bad line, an unexpected reply) may pass with a new connection.
    """

    reason: str
    fatal: bool = False


ClientEvent: TypeAlias = (
    SendLine
    | InitStarted
    | RecordReceived
    | InitFinished
    | BatchStarted
    | BatchFinished
    | ResumeRefused
    | Resumed
    | Failed
)
Line: TypeAlias = Reply | Record


class ClientState(Enum):
    NEW = "NEW"
    STARTING = "STARTING"  # START sent
    AUTHENTICATING = "AUTHENTICATING"  # AUTH sent
    RESUMING = "RESUMING"  # SN sent
    INIT_SESSION = "INIT_SESSION"  # INIT sent, SESSION expected
    INIT_SERIAL = "INIT_SERIAL"  # SERIAL expected
    INIT_STREAM = "INIT_STREAM"  # snapshot records until EOF
    IDLE = "IDLE"  # up to date; the caller may call next()
    BATCH_HEAD = "BATCH_HEAD"  # NEXT sent, SERIAL expected
    BATCH = "BATCH"  # batch records until EOF
    FAILED = "FAILED"


class ClientConversation:
    """One connection's conversation as seen by the client."""

    def __init__(
        self,
        secret: bytes | None,
        resume: tuple[str, int] | None,
        nonce_hex: str = "",
        binding: Binding = b"",
    ) -> None:
        if secret is not None and not is_nonce(nonce_hex):
            raise ValueError(f"a nonce is 32 hex digits, not {nonce_hex!r}")
        self.secret = secret
        self.resume = resume
        self.nonce_hex = nonce_hex
        self.binding = binding
        self._expected_proof: str | None = None  # Ps, once AUTH is sent
        self.state = ClientState.NEW
        self.session: str | None = None
        self.serial: int | None = None  # the serial reached once the current data is applied
        self._handlers: dict[ClientState, Callable[[Line], list[ClientEvent]]] = {
            ClientState.STARTING: self._on_start_reply,
            ClientState.AUTHENTICATING: self._on_auth_reply,
            ClientState.RESUMING: self._on_resume_reply,
            ClientState.INIT_SESSION: self._on_session,
            ClientState.INIT_SERIAL: self._on_init_serial,
            ClientState.INIT_STREAM: self._on_stream_line,
            ClientState.BATCH_HEAD: self._on_batch_serial,
            ClientState.BATCH: self._on_stream_line,
        }

    def start(self) -> list[bytes]:
        """The lines to send once connected."""
        if self.state is not ClientState.NEW:
            raise RuntimeError("start() called twice")
        self.state = ClientState.STARTING
        return [Start().encode()]

    def next(self) -> bytes:
        """The line asking for the next batch; only when idle (after init, resume or a batch)."""
        if self.state is not ClientState.IDLE:
            raise RuntimeError(f"next() in state {self.state.name}")
        self.state = ClientState.BATCH_HEAD
        return Next().encode()

    def receive(self, line: bytes) -> list[ClientEvent]:
        """Handle one server line (terminator removed)."""
        if self.state is ClientState.FAILED:
            return []
        handler = self._handlers.get(self.state)
        if handler is None:
            return self._fail(f"unexpected line in state {self.state.name}: {line[:80]!r}")
        try:
            parsed = parse_server_line(line)
        except ProtocolError as e:
            return self._fail(f"bad line from server: {e}")
        return handler(parsed)

    # -- handlers, one per waiting state -------------------------------------

    def _on_start_reply(self, line: Line) -> list[ClientEvent]:
        if isinstance(line, Ok) and line.proof_hex is None:
            if self.secret is not None:
                return self._fail(
                    "server did not prove it knows the secret: it answered START with a plain OK"
                )
            return self._after_ok()
        if isinstance(line, Challenge):
            if self.secret is None:
                return self._fail(
                    "server requires authentication; no secret configured", fatal=True
                )
            return self._authenticate(self.secret, line.nonce_hex)
        return self._unexpected(line)

    def _authenticate(self, secret: bytes, server_nonce: str) -> list[ClientEvent]:
        binding = binding_bytes(self.binding)
        facts = (secret, server_nonce, self.nonce_hex, binding)
        self._expected_proof = server_proof(*facts)
        self.state = ClientState.AUTHENTICATING
        return [SendLine(Auth(client_proof(*facts), self.nonce_hex).encode())]

    def _on_auth_reply(self, line: Line) -> list[ClientEvent]:
        if not isinstance(line, Ok):
            return self._unexpected(line)
        assert self._expected_proof is not None
        given = (line.proof_hex or "").lower().encode("ascii")
        if not hmac.compare_digest(self._expected_proof.encode("ascii"), given):
            return self._fail(
                "server's proof does not verify: it does not know the secret,"
                " or the connection is relayed"
            )
        return self._after_ok()

    def _after_ok(self) -> list[ClientEvent]:
        if self.resume is None:
            return self._send_init()
        self.state = ClientState.RESUMING
        return [SendLine(Resume(*self.resume).encode())]

    def _send_init(self) -> list[ClientEvent]:
        self.state = ClientState.INIT_SESSION
        return [SendLine(Init().encode())]

    def _on_resume_reply(self, line: Line) -> list[ClientEvent]:
        assert self.resume is not None
        if isinstance(line, Ok):
            self.session, self.serial = self.resume
            self.state = ClientState.IDLE
            return [Resumed(*self.resume)]
        if isinstance(line, ErrorReply) and line.text in (SESSION_INVALID, SERIAL_OVERDUE):
            self.resume = None
            return [ResumeRefused(line.text.decode("ascii")), *self._send_init()]
        return self._unexpected(line)

    def _on_session(self, line: Line) -> list[ClientEvent]:
        if not isinstance(line, SessionId):
            return self._unexpected(line)
        self.session = line.session
        self.state = ClientState.INIT_SERIAL
        return []

    def _on_init_serial(self, line: Line) -> list[ClientEvent]:
        if not isinstance(line, Serial):
            return self._unexpected(line)
        assert self.session is not None
        self.serial = line.serial
        self.state = ClientState.INIT_STREAM
        return [InitStarted(self.session, line.serial)]

    def _on_batch_serial(self, line: Line) -> list[ClientEvent]:
        if not isinstance(line, Serial):
            return self._unexpected(line)
        if self.serial is not None and line.serial < self.serial:
            return self._fail(f"server went back from serial {self.serial} to {line.serial}")
        self.serial = line.serial
        self.state = ClientState.BATCH
        return [BatchStarted(line.serial)]

    def _on_stream_line(self, line: Line) -> list[ClientEvent]:
        if isinstance(line, Record):
            return [RecordReceived(line)]
        if not isinstance(line, Eof):
            return self._unexpected(line)
        assert self.session is not None and self.serial is not None
        finished: ClientEvent
        if self.state is ClientState.INIT_STREAM:
            finished = InitFinished(self.session, self.serial)
        else:
            finished = BatchFinished(self.serial)
        self.state = ClientState.IDLE
        return [finished]

    def _unexpected(self, line: Line) -> list[ClientEvent]:
        if isinstance(line, ErrorReply):
            return self._fail(
                f"server said {line.text.decode('ascii')}", fatal=line.text == AUTH_FAILED
            )
        shown = line.encode()[:80]
        return self._fail(f"unexpected line in state {self.state.name}: {shown!r}")

    def _fail(self, reason: str, *, fatal: bool = False) -> list[ClientEvent]:
        self.state = ClientState.FAILED
        return [Failed(reason, fatal)]
