"""MRTR, a batched RETR that mirrord's embedded FTP service offers: the wire format.

FTP costs a PASV, a RETR and two replies per file; with small files the
round trips and the server's per-command work, not the bytes, set the pace
(100,000 files of 1 KiB took 44 times one `rsync -a`). A server that lists
`MRTR` in its FEAT reply takes many files over one data connection:

1. the client opens a data connection as for RETR (PASV or EPSV) and sends
   `MRTR` on the control connection;
2. on the data connection it sends each absolute path followed by a NUL,
   then one more NUL (an empty name ends the list), at most `MAX_NAMES`
   names of at most `MAX_NAME` bytes each;
3. the server answers, in the order asked, one frame per path: a status
   byte; after `OK` the content as chunks (a 4-byte big-endian length, then
   that many bytes) ending with an empty chunk and a second status byte
   (`OK` when the file was read to its end, `FAILED` when reading it failed);
4. the server closes the data connection and replies 226 on the control
   connection (501 for a list it will not take).

Unlike a 550 reply, the status says which of "not there", "not a regular
file" and "permission denied" it was. This module is the codec only, pure
and shared by both ends; servers without MRTR get one RETR per file.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "COMMAND",
    "MAX_NAME",
    "MAX_NAMES",
    "BatchError",
    "Content",
    "End",
    "FrameReader",
    "NameReader",
    "Start",
    "Status",
    "chunk",
    "encode_names",
]

COMMAND = "MRTR"
MAX_NAMES = 4096
MAX_NAME = 4096
_LENGTH = struct.Struct(">I")


class Status(enum.IntEnum):
    OK = 0
    MISSING = 1  # not there, or not served (outside the included trees)
    NOT_A_FILE = 2
    DENIED = 3
    FAILED = 4


class BatchError(ValueError):
    """A batch that breaks the format (from either side)."""


def encode_names(paths: Iterable[bytes]) -> bytes:
    out = []
    for path in paths:
        if not path or b"\0" in path or len(path) > MAX_NAME:
            raise BatchError(f"cannot ask for {path!r} in a batch")
        out.append(path + b"\0")
    if len(out) > MAX_NAMES:
        raise BatchError(f"at most {MAX_NAMES} names in one batch")
    return b"".join(out) + b"\0"


class NameReader:
    """The server's side of step 2: bytes in, the names once the list is whole."""

    def __init__(self) -> None:
        self._buffer = b""
        self.names: list[bytes] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        if self.done:
            raise BatchError("data after the end of the name list")
        self._buffer += data
        while not self.done:
            name, sep, rest = self._buffer.partition(b"\0")
            if not sep:
                if len(self._buffer) > MAX_NAME:
                    raise BatchError(f"a name longer than {MAX_NAME} bytes")
                return
            self._buffer = rest
            if not name:
                self.done = True
            elif len(self.names) == MAX_NAMES or len(name) > MAX_NAME:
                raise BatchError(f"more than {MAX_NAMES} names, or a name too long")
            else:
                self.names.append(name)
        if self._buffer:
            raise BatchError("data after the end of the name list")


def chunk(data: bytes) -> bytes:
    """One content chunk; `chunk(b"")` ends a file's content."""
    return _LENGTH.pack(len(data)) + data


@dataclass(frozen=True)
class Start:
    status: Status


@dataclass(frozen=True)
class Content:
    data: bytes


@dataclass(frozen=True)
class End:
    status: Status


Event = Start | Content | End


class FrameReader:
    """The client's side of step 3: bytes in, events out, one file after another."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "status"  # status -> (length -> data)* -> end

    def feed(self, data: bytes) -> Iterator[Event]:
        self._buffer += data
        while True:
            if self._state == "status" or self._state == "end":
                if not self._buffer:
                    return
                status = _status(self._buffer[0])
                del self._buffer[0]
                if self._state == "end":
                    self._state = "status"
                    yield End(status)
                else:
                    self._state = "length" if status is Status.OK else "status"
                    yield Start(status)
            elif self._state == "length":
                if len(self._buffer) < _LENGTH.size:
                    return
                (self._want,) = _LENGTH.unpack_from(self._buffer)
                del self._buffer[: _LENGTH.size]
                self._state = "data" if self._want else "end"
            else:  # data
                if not self._buffer:
                    return
                take = bytes(self._buffer[: self._want])
                del self._buffer[: len(take)]
                self._want -= len(take)
                if not self._want:
                    self._state = "length"
                yield Content(take)

    @property
    def between_files(self) -> bool:
        """True when the bytes so far end exactly after a whole frame."""
        return self._state == "status" and not self._buffer


def _status(byte: int) -> Status:
    try:
        return Status(byte)
    except ValueError:
        raise BatchError(f"unknown status {byte} in a batch reply") from None
