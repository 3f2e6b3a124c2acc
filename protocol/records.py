"""Records: the change-log lines both sides exchange, as frozen values.

A record is ``ACTION:PATH[<TAB>TARGET]`` followed by optional ``key=value``
metadata fields. Encoding and decoding live together so the two can never
drift; decoding is strict about what it understands (field counts, numbers)
and ignores metadata keys it does not know, so a newer server can add keys.
Integers are parsed from bounded digit strings only, so no input can make
``int()`` slow or raise anything but ``ProtocolError``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import ProtocolError
from protocol.paths import quote, unquote

__all__ = ["Action", "Meta", "Record", "decode_mtime", "encode_mtime"]

_NS = 1_000_000_000
_OCTAL = re.compile(rb"[0-7]{1,8}")
_DECIMAL = re.compile(rb"[0-9]{1,20}")
_MTIME = re.compile(rb"(-?)([0-9]{1,20})(?:\.([0-9]{1,9}))?")


class Action(StrEnum):
    """What a record asks the client to do."""

    CREATE = "CREATE"
    FWRITE = "FWRITE"
    DELETE = "DELETE"
    MOVE = "MOVE"
    SYMLINK = "SYMLINK"
    ATTRIB = "ATTRIB"


_PREFIX = {action: action.value.encode("ascii") + b":" for action in Action}
_BY_NAME = {action.value.encode("ascii"): action for action in Action}
_WITH_TARGET = frozenset({Action.MOVE, Action.SYMLINK})


def encode_mtime(ns: int) -> bytes:
    """Integer nanoseconds as the wire's decimal seconds (``-0.5`` for -500 ms, ``3``, ``1.25``)."""
    sign = b"-" if ns < 0 else b""
    seconds, fraction = divmod(abs(ns), _NS)
    if not fraction:
        return b"%s%d" % (sign, seconds)
    return b"%s%d.%s" % (sign, seconds, (b"%09d" % fraction).rstrip(b"0"))


def decode_mtime(value: bytes) -> int:
    """The wire's decimal seconds as integer nanoseconds; raises ``ProtocolError``."""
    match = _MTIME.fullmatch(value)
    if match is None:
        raise ProtocolError(message=f"bad mtime {value[:40]!r}")
    sign, seconds, fraction = match.groups()
    ns = int(seconds) * _NS + int((fraction or b"").ljust(9, b"0"))
    return -ns if sign else ns


def _decode_int(key: bytes, value: bytes, pattern: re.Pattern[bytes], base: int) -> int:
    if pattern.fullmatch(value) is None:
        raise ProtocolError(message=f"bad {key.decode('ascii')} value {value[:40]!r}")
    return int(value, base)


@dataclass(frozen=True, slots=True)
class Meta:
    """Optional metadata of a record; ``None`` means not sent."""

    mode: int | None = None  # permission bits (st_mode & 0o7777); wire: octal
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    mtime_ns: int | None = None  # wire: seconds with up to 9 fraction digits
    #: On a directory's CREATE: mirrord could not read it, so a client keeps
    #: whatever it has below it.  Wire: ``unreadable=1``; absent means False.
    unreadable: bool = False

    def __post_init__(self) -> None:
        if self.mode is not None and not 0 <= self.mode <= 0o7777:
            raise ValueError(f"mode {self.mode:#o} is not permission bits (mask with 0o7777)")
        for name in ("uid", "gid", "size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative: {value}")

    def fields(self) -> list[bytes]:
        """The ``key=value`` fields for the keys that are set, in a fixed order."""
        out = []
        if self.mode is not None:
            out.append(b"mode=%o" % self.mode)
        if self.uid is not None:
            out.append(b"uid=%d" % self.uid)
        if self.gid is not None:
            out.append(b"gid=%d" % self.gid)
        if self.size is not None:
            out.append(b"size=%d" % self.size)
        if self.mtime_ns is not None:
            out.append(b"mtime=" + encode_mtime(self.mtime_ns))
        if self.unreadable:
            out.append(b"unreadable=1")
        return out

    @classmethod
    def from_fields(cls, fields: Sequence[bytes]) -> Meta:
        """Parse ``key=value`` fields; unknown keys are ignored, a known key twice is an error."""
        if not fields:
            return _NO_META
        values: dict[str, int] = {}
        for field in fields:
            key, sep, value = field.partition(b"=")
            if not sep:
                raise ProtocolError(message=f"field without '=': {field[:80]!r}")
            if key == b"mode":
                number = _decode_int(key, value, _OCTAL, 8)
            elif key in (b"uid", b"gid", b"size"):
                number = _decode_int(key, value, _DECIMAL, 10)
            elif key == b"mtime":
                key, number = b"mtime_ns", decode_mtime(value)
            elif key == b"unreadable":
                if value not in (b"0", b"1"):
                    raise ProtocolError(message=f"bad unreadable value {value[:40]!r}")
                number = int(value == b"1")
            else:
                continue
            name = key.decode("ascii")
            if name in values:
                raise ProtocolError(message=f"{name} given twice")
            values[name] = number
        try:
            return cls(
                mode=values.get("mode"),
                uid=values.get("uid"),
                gid=values.get("gid"),
                size=values.get("size"),
                mtime_ns=values.get("mtime_ns"),
                unreadable=values.get("unreadable") == 1,
            )
        except ValueError as e:
            raise ProtocolError(message=str(e)) from None


_NO_META = Meta()


@dataclass(frozen=True, slots=True)
class Record:
    """One change: MOVE and SYMLINK carry a ``target``, the other actions must not."""

    action: Action
    path: bytes
    target: bytes | None = None  # MOVE destination or SYMLINK target
    meta: Meta = _NO_META

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a record needs a non-empty path")
        if self.action in _WITH_TARGET:
            if not self.target:
                raise ValueError(f"{self.action.value} needs a non-empty target")
        elif self.target is not None:
            raise ValueError(f"{self.action.value} takes no target")

    def encode(self) -> bytes:
        """The record as one line, without a line terminator."""
        parts = [_PREFIX[self.action] + quote(self.path)]
        if self.target is not None:
            parts.append(quote(self.target))
        if self.meta is not _NO_META:
            parts.extend(self.meta.fields())
        return b"\t".join(parts)

    @classmethod
    def decode(cls, line: bytes) -> Record:
        """Parse one line (no terminator); raises ``ProtocolError`` and nothing else."""
        name, sep, rest = bytes(line).partition(b":")
        action = _BY_NAME.get(name)
        if action is None or not sep:
            raise ProtocolError(message=f"not a record: {bytes(line[:80])!r}")
        fields = rest.split(b"\t")
        npaths = 2 if action in _WITH_TARGET else 1
        if len(fields) < npaths:
            raise ProtocolError(message=f"{action.value} needs {npaths} fields")
        path = unquote(fields[0])
        target = unquote(fields[1]) if npaths == 2 else None
        meta = Meta.from_fields(fields[npaths:])
        try:
            return cls(action, path, target, meta)
        except ValueError as e:
            raise ProtocolError(message=str(e)) from None
