"""The server side of the conversation as a transition table.

``TABLE`` maps (state, kind of command received) to a ``Rule``: which step to
run and the states it may lead to. Storage is never called from here; the
adapter is told what to do through outputs (``BeginInit``, ``CheckResume``,
``WantNext``) and reports the facts back (``init_done``, ``resume_checked``,
``batch_sent``). Every pair is in the table, so a test can walk all of it.

Authentication (contract 2.1) is mutual: the adapter gives the conversation
its fresh nonce and the channel binding (the TLS exporter value, or empty),
as bytes or as a callable read when the AUTH arrives, since the TLS
handshake may still be under way when the connection is made.  Nothing about
the secret is sent before the client's proof verified.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from protocol.errors import ProtocolError
from protocol.messages import (
    AUTH_FAILED,
    INVALID_COMMAND,
    INVALID_INIT_COMMAND,
    INVALID_REALTIME_COMMAND,
    SERIAL_OVERDUE,
    SESSION_INVALID,
    Auth,
    Binding,
    Challenge,
    Command,
    Init,
    Next,
    Ok,
    Resume,
    Start,
    binding_bytes,
    client_proof,
    is_nonce,
    parse_command,
    server_proof,
)

__all__ = [
    "TABLE",
    "BeginInit",
    "CheckResume",
    "Close",
    "Kind",
    "Output",
    "ResumeResult",
    "Rule",
    "Send",
    "ServerConversation",
    "State",
    "Step",
    "WantNext",
    "command_kind",
]


_NOT_A_LINE = re.compile(rb"[^\x20-\x7e]")


class State(Enum):
    NEW = "NEW"  # waiting for START
    CHALLENGED = "CHALLENGED"  # CHALLENGE sent, waiting for AUTH
    STARTED = "STARTED"  # OK sent, waiting for INIT or SN
    RESUMING = "RESUMING"  # SN received, adapter checking it
    STREAMING = "STREAMING"  # INIT snapshot being streamed
    REALTIME = "REALTIME"  # waiting for NEXT
    WAITING = "WAITING"  # NEXT received, adapter sending the next batch
    CLOSED = "CLOSED"


class Kind(Enum):
    """What a received line is; INVALID covers blank and unknown lines."""

    START = "START"
    AUTH = "AUTH"
    INIT = "INIT"
    SN = "SN"
    NEXT = "NEXT"
    INVALID = "INVALID"


class Step(Enum):
    START = "start"  # OK, or CHALLENGE when a secret is set
    AUTH = "auth"  # OK, or AUTH FAILED and close
    INIT = "init"  # BeginInit
    RESUME = "resume"  # CheckResume
    NEXT = "next"  # WantNext
    HOLD = "hold"  # keep one NEXT for later; a second one is an error
    REJECT = "reject"  # send the rule's error reply and close
    IGNORE = "ignore"  # already closed: drop the line


class ResumeResult(Enum):
    OK = "OK"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"
    SERIAL_OUT_OF_RANGE = "SERIAL_OUT_OF_RANGE"


@dataclass(frozen=True)
class Rule:
    step: Step
    to: frozenset[State]  # the states this row can lead to
    reply: bytes | None = None  # the error text, for REJECT


def _rule(step: Step, *to: State, reply: bytes | None = None) -> Rule:
    return Rule(step, frozenset(to), reply)


_ACCEPTED: dict[tuple[State, Kind], Rule] = {
    (State.NEW, Kind.START): _rule(Step.START, State.STARTED, State.CHALLENGED),
    (State.CHALLENGED, Kind.AUTH): _rule(Step.AUTH, State.STARTED, State.CLOSED),
    (State.STARTED, Kind.INIT): _rule(Step.INIT, State.STREAMING),
    (State.STARTED, Kind.SN): _rule(Step.RESUME, State.RESUMING),
    (State.RESUMING, Kind.NEXT): _rule(Step.HOLD, State.RESUMING, State.CLOSED),
    (State.STREAMING, Kind.NEXT): _rule(Step.HOLD, State.STREAMING, State.CLOSED),
    (State.REALTIME, Kind.NEXT): _rule(Step.NEXT, State.WAITING),
    (State.WAITING, Kind.NEXT): _rule(Step.HOLD, State.WAITING, State.CLOSED),
}

# Anything not accepted above gets the error the contract names for the state.
_REJECTED_WITH: dict[State, bytes] = {
    State.NEW: INVALID_COMMAND,
    State.CHALLENGED: INVALID_COMMAND,
    State.STARTED: INVALID_INIT_COMMAND,
    State.RESUMING: INVALID_REALTIME_COMMAND,
    State.STREAMING: INVALID_REALTIME_COMMAND,
    State.REALTIME: INVALID_REALTIME_COMMAND,
    State.WAITING: INVALID_REALTIME_COMMAND,
}

TABLE: dict[tuple[State, Kind], Rule] = {
    **{(s, k): _rule(Step.IGNORE, State.CLOSED) for k in Kind for s in [State.CLOSED]},
    **{
        (state, kind): _rule(Step.REJECT, State.CLOSED, reply=reply)
        for state, reply in _REJECTED_WITH.items()
        for kind in Kind
    },
    **_ACCEPTED,
}

_KINDS: dict[type, Kind] = {
    Start: Kind.START,
    Auth: Kind.AUTH,
    Init: Kind.INIT,
    Resume: Kind.SN,
    Next: Kind.NEXT,
}


def command_kind(command: Command | None) -> Kind:
    return Kind.INVALID if command is None else _KINDS[type(command)]


# -- outputs: what the adapter must do ---------------------------------------


@dataclass(frozen=True)
class Send:
    line: bytes  # without terminator


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class BeginInit:
    """Stream SESSION, SERIAL, the snapshot and EOF, then call ``init_done``."""


@dataclass(frozen=True)
class CheckResume:
    """Look the session and serial up, then call ``resume_checked``."""

    session: str
    serial: int


@dataclass(frozen=True)
class WantNext:
    """Send a batch (SERIAL, records, EOF) once there is one, then call ``batch_sent``."""


Output: TypeAlias = Send | Close | BeginInit | CheckResume | WantNext

_RESUME_REPLIES = {
    ResumeResult.UNKNOWN_SESSION: SESSION_INVALID,
    ResumeResult.SERIAL_OUT_OF_RANGE: SERIAL_OVERDUE,
}


class ServerConversation:
    """One client's conversation; lines in, outputs out, no I/O."""

    def __init__(self, secret: bytes | None, nonce_hex: str, binding: Binding = b"") -> None:
        if not is_nonce(nonce_hex):  # ValueError now rather than at AUTH time
            raise ValueError(f"a nonce is 32 hex digits, not {nonce_hex!r}")
        self.secret = secret
        self.nonce_hex = nonce_hex
        self.binding = binding
        self.state = State.NEW
        self.held_next = False

    def receive(self, line: bytes) -> list[Output]:
        """Handle one client line (terminator already removed).

        A line with bytes no command contains (controls, non-ASCII) is "not a
        valid line": INVALID COMMAND and a close, whatever the state.
        """
        if _NOT_A_LINE.search(line.rstrip(b"\r")):
            return self.protocol_error(ProtocolError(INVALID_COMMAND))
        command = parse_command(line)
        rule = TABLE[(self.state, command_kind(command))]
        return self._run(rule, command)

    def protocol_error(self, error: ProtocolError) -> list[Output]:
        """The line buffer (or another parser) refused the input: answer and close."""
        if self.state is State.CLOSED:
            return []
        return self._close(error.reply) if error.close else self._send(error.reply)

    def init_done(self) -> list[Output]:
        """The INIT stream (ending with EOF) has been sent."""
        return self._release(State.STREAMING)

    def batch_sent(self) -> list[Output]:
        """The batch asked for by ``WantNext`` (ending with EOF) has been sent."""
        return self._release(State.WAITING)

    def resume_checked(self, result: ResumeResult) -> list[Output]:
        """The answer to ``CheckResume``."""
        if self._expect(State.RESUMING):
            return []
        if result is ResumeResult.OK:
            return [Send(Ok().encode()), *self._release(State.RESUMING)]
        self.held_next = False
        self.state = State.STARTED  # the client may INIT or try SN again
        return [Send(_RESUME_REPLIES[result])]

    # -- steps ---------------------------------------------------------------

    def _run(self, rule: Rule, command: Command | None) -> list[Output]:
        step = rule.step
        if step is Step.REJECT:
            return self._close(rule.reply)
        if step is Step.START:
            if self.secret is None:
                self.state = State.STARTED
                return [Send(Ok().encode())]
            self.state = State.CHALLENGED
            return [Send(Challenge(self.nonce_hex).encode())]
        if step is Step.AUTH:
            assert isinstance(command, Auth)
            return self._authenticate(command)
        if step is Step.INIT:
            self.state = State.STREAMING
            return [BeginInit()]
        if step is Step.RESUME:
            assert isinstance(command, Resume)
            self.state = State.RESUMING
            return [CheckResume(command.session, command.serial)]
        if step is Step.NEXT:
            self.state = State.WAITING
            return [WantNext()]
        if step is Step.HOLD:
            if self.held_next:
                return self._close(INVALID_REALTIME_COMMAND)
            self.held_next = True
            return []
        return []  # Step.IGNORE

    def _authenticate(self, auth: Auth) -> list[Output]:
        """Check the client's proof in constant time; only then prove ourselves."""
        assert self.secret is not None
        if not is_nonce(auth.nonce_hex):
            return self._close(AUTH_FAILED)
        binding = binding_bytes(self.binding)
        facts = (self.secret, self.nonce_hex, auth.nonce_hex, binding)
        expected = client_proof(*facts).encode("ascii")
        if not hmac.compare_digest(expected, auth.proof_hex.lower().encode("ascii")):
            return self._close(AUTH_FAILED)
        self.state = State.STARTED
        return [Send(Ok(server_proof(*facts)).encode())]

    def _release(self, expected: State) -> list[Output]:
        """Leave a busy state for REALTIME, or straight on to the held NEXT."""
        if self._expect(expected):
            return []
        if self.held_next:
            self.held_next = False
            self.state = State.WAITING
            return [WantNext()]
        self.state = State.REALTIME
        return []

    def _expect(self, state: State) -> bool:
        """True if closed (the caller should do nothing); raises on adapter misuse."""
        if self.state is State.CLOSED:
            return True
        if self.state is not state:
            raise RuntimeError(f"called in state {self.state.name}, expected {state.name}")
        return False

    def _send(self, reply: bytes | None) -> list[Output]:
        return [] if reply is None else [Send(reply)]

    def _close(self, reply: bytes | None) -> list[Output]:
        self.state = State.CLOSED
        self.held_next = False
        return [*self._send(reply), Close()]
