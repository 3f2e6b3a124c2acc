"""Client commands and server replies as frozen values, with their parsers.

Commands are what a client sends (``START``, ``AUTH:``, ``INIT``, ``SN:``,
``NEXT``); replies are the server's non-record lines. ``parse_command`` never
raises: anything it does not recognise is ``None``, and the server's state
table decides which error that earns. ``parse_server_line`` returns a reply
or a ``Record`` and raises only ``ProtocolError``.

The framing of what the server writes is here too, so its adapter only
calls it: ``init_head`` (``SESSION:`` and ``SERIAL:``), ``server_lines`` (the
records, CRLF-ended), ``EOF_LINE`` and ``batch_lines`` (one NEXT answer).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from protocol.errors import INVALID_COMMAND, ProtocolError
from protocol.records import Record

__all__ = [
    "AUTH_FAILED",
    "BUSY",
    "CRLF",
    "EOF_LINE",
    "INVALID_COMMAND",
    "INVALID_INIT_COMMAND",
    "INVALID_REALTIME_COMMAND",
    "SERIAL_OVERDUE",
    "SESSION_INVALID",
    "Auth",
    "Binding",
    "Challenge",
    "Command",
    "Eof",
    "ErrorReply",
    "Init",
    "Next",
    "Ok",
    "Reply",
    "Resume",
    "Serial",
    "SessionId",
    "Start",
    "batch_lines",
    "binding_bytes",
    "client_proof",
    "encode_line",
    "init_head",
    "is_nonce",
    "server_lines",
    "parse_command",
    "parse_server_line",
    "server_proof",
]

INVALID_INIT_COMMAND = b"INVALID INIT COMMAND"
SESSION_INVALID = b"SESSION INVALID"
SERIAL_OVERDUE = b"SERIAL OVERDUE OR INVALID"
INVALID_REALTIME_COMMAND = b"INVALID REALTIME COMMAND"
AUTH_FAILED = b"AUTH FAILED"
BUSY = b"BUSY"  # max-clients reached: sent instead of anything else, then a close

_SESSION = re.compile(rb"[0-9A-Za-z]{1,64}")
_SERIAL = re.compile(rb"[0-9]{1,20}")
_AUTH_ARG = re.compile(rb"[\x21-\x7e]{0,256}")  # any visible ASCII: a wrong one is AUTH FAILED
_NONCE = re.compile(rb"[0-9A-Fa-f]{32}")  # 16 random bytes, in hex
_PROOF = re.compile(rb"[0-9A-Fa-f]{64}")  # an HMAC-SHA256, in hex
_ERROR_TEXT = re.compile(rb"[A-Z]+(?: [A-Z]+)*")


# -- client commands ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    def encode(self) -> bytes:
        return b"START"


@dataclass(frozen=True, slots=True)
class Init:
    def encode(self) -> bytes:
        return b"INIT"


@dataclass(frozen=True, slots=True)
class Next:
    def encode(self) -> bytes:
        return b"NEXT"


@dataclass(frozen=True, slots=True)
class Resume:
    """``SN:<session>,<serial>``: continue after the last serial applied."""

    session: str
    serial: int

    def encode(self) -> bytes:
        return b"SN:%s,%d" % (self.session.encode("ascii"), self.serial)


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH:<Pc>:<Nc>``: the client's proof (``client_proof``) and its own nonce.

    Parsed leniently: an AUTH whose fields are malformed is still an AUTH
    (``nonce_hex`` empty when there is none), and fails as AUTH FAILED.
    """

    proof_hex: str
    nonce_hex: str

    def encode(self) -> bytes:
        fields = [self.proof_hex, self.nonce_hex] if self.nonce_hex else [self.proof_hex]
        return b"AUTH:" + ":".join(fields).encode("ascii")


Command: TypeAlias = Start | Init | Next | Resume | Auth

_SIMPLE: dict[bytes, Command] = {b"START": Start(), b"INIT": Init(), b"NEXT": Next()}


def parse_command(line: bytes) -> Command | None:
    """The command on a client line (trailing spaces/CR ignored), or ``None`` if it is none."""
    line = bytes(line).rstrip(b" \r")
    simple = _SIMPLE.get(line)
    if simple is not None:
        return simple
    name, sep, arg = line.partition(b":")
    if not sep:
        return None
    if name == b"SN":
        # A malformed argument is still an SN: a session that cannot be ours
        # is unknown (SESSION INVALID), a serial that cannot be one is out of
        # range (SERIAL OVERDUE OR INVALID); the client may then INIT.
        session, comma, serial = arg.partition(b",")
        if not comma or not _SESSION.fullmatch(session):
            return Resume("", 0)
        if not _SERIAL.fullmatch(serial):
            return Resume(session.decode("ascii"), -1)
        return Resume(session.decode("ascii"), int(serial))
    if name == b"AUTH" and _AUTH_ARG.fullmatch(arg):
        proof, _, nonce = arg.decode("ascii").partition(":")
        return Auth(proof, nonce)
    return None


# -- server replies ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    """``OK``, or ``OK:<Ps>`` answering a good AUTH with the server's own proof."""

    proof_hex: str | None = None

    def encode(self) -> bytes:
        if self.proof_hex is None:
            return b"OK"
        return b"OK:" + self.proof_hex.encode("ascii")


@dataclass(frozen=True, slots=True)
class Eof:
    def encode(self) -> bytes:
        return b"EOF"


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce_hex: str

    def encode(self) -> bytes:
        return b"CHALLENGE:" + self.nonce_hex.encode("ascii")


@dataclass(frozen=True, slots=True)
class SessionId:
    session: str

    def encode(self) -> bytes:
        return b"SESSION:" + self.session.encode("ascii")


@dataclass(frozen=True, slots=True)
class Serial:
    serial: int

    def encode(self) -> bytes:
        return b"SERIAL:%d" % self.serial


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error line such as ``SESSION INVALID``; ``text`` is the exact line."""

    text: bytes

    def encode(self) -> bytes:
        return self.text


Reply: TypeAlias = Ok | Eof | Challenge | SessionId | Serial | ErrorReply


def _serial(value: bytes) -> Reply:
    return Serial(int(value))


def _session(value: bytes) -> Reply:
    return SessionId(value.decode("ascii"))


def _challenge(value: bytes) -> Reply:
    return Challenge(value.decode("ascii"))


def _proven_ok(value: bytes) -> Reply:
    return Ok(value.decode("ascii"))


_VALUED: dict[bytes, tuple[re.Pattern[bytes], Callable[[bytes], Reply]]] = {
    b"SERIAL": (_SERIAL, _serial),
    b"SESSION": (_SESSION, _session),
    b"CHALLENGE": (_NONCE, _challenge),
    b"OK": (_PROOF, _proven_ok),
}


def parse_server_line(line: bytes) -> Reply | Record:
    """A server line (no terminator) as a reply or a record; raises only ``ProtocolError``."""
    line = bytes(line)
    if line == b"OK":
        return Ok()
    if line == b"EOF":
        return Eof()
    name, sep, arg = line.partition(b":")
    valued = _VALUED.get(name) if sep else None
    if valued is not None:
        pattern, make = valued
        if pattern.fullmatch(arg) is None:
            raise ProtocolError(message=f"bad {name.decode('ascii')} line {line[:80]!r}")
        return make(arg)
    if not sep and _ERROR_TEXT.fullmatch(line):
        return ErrorReply(line)
    return Record.decode(line)


# The channel binding B: the bytes, or a callable giving them when the proof
# is computed (a TLS handshake may still be running when a connection opens).
Binding: TypeAlias = bytes | Callable[[], bytes]


def binding_bytes(binding: Binding) -> bytes:
    """The binding's bytes, asking for them now if they were given as a callable."""
    return binding if isinstance(binding, bytes) else binding()


def is_nonce(text: str) -> bool:
    """True for a nonce as the contract writes one: 32 hex digits (16 bytes)."""
    return _NONCE.fullmatch(text.encode("ascii", "replace")) is not None


def _proof(role: bytes, secret: bytes, server_nonce: str, client_nonce: str, binding: bytes) -> str:
    message = role + b"\0" + bytes.fromhex(server_nonce) + bytes.fromhex(client_nonce) + binding
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def client_proof(secret: bytes, server_nonce: str, client_nonce: str, binding: bytes) -> str:
    """``Pc``, the AUTH proof: hex HMAC-SHA256(secret, "mirror-client\\0" + Ns + Nc + B).

    The nonces are given in hex and enter as raw bytes; ``binding`` (B) is the
    TLS connection's RFC 9266 exporter value, or empty without TLS.
    """
    return _proof(b"mirror-client", secret, server_nonce, client_nonce, binding)


def server_proof(secret: bytes, server_nonce: str, client_nonce: str, binding: bytes) -> str:
    """``Ps``, the proof in ``OK:<Ps>``: as ``client_proof`` with "mirror-server\\0"."""
    return _proof(b"mirror-server", secret, server_nonce, client_nonce, binding)


def encode_line(line: bytes, *, server: bool = True) -> bytes:
    """Terminate one line for the wire: CRLF from the server, LF from a client."""
    if b"\n" in line or b"\r" in line:
        raise ValueError(f"line break inside a line: {line[:80]!r}")
    return line + (b"\r\n" if server else b"\n")


CRLF = b"\r\n"
EOF_LINE = Eof().encode() + CRLF


def server_lines(lines: Iterable[bytes]) -> bytes:
    """Encoded records as the server writes them, each ended with CRLF.

    No check for line breaks inside: an encoded record never holds one
    (``paths.quote`` escapes them), and this runs once per INIT entry.
    """
    return b"".join(line + CRLF for line in lines)


def init_head(session: str, serial: int) -> bytes:
    """The lines an INIT stream starts with: ``SESSION:<id>`` then ``SERIAL:<S>``."""
    return encode_line(SessionId(session).encode()) + encode_line(Serial(serial).encode())


def batch_lines(serial: int, records: Sequence[bytes]) -> bytes:
    """One answer to NEXT: ``SERIAL:<T>`` (the last record's serial), the records, ``EOF``."""
    return encode_line(Serial(serial).encode()) + server_lines(records) + EOF_LINE
