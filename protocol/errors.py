"""The one exception the protocol package raises for bad input.

Every parser in ``protocol`` either returns a value or raises ``ProtocolError``;
the error carries the exact wire reply and whether the connection must close,
so an adapter can answer a bad client without matching exception text.
"""

from __future__ import annotations

__all__ = ["INVALID_COMMAND", "ProtocolError"]

#: The reply to a line that is not valid at all (defined here so errors.py
#: needs nothing else; ``protocol.messages`` re-exports it with the others).
INVALID_COMMAND = b"INVALID COMMAND"


class ProtocolError(Exception):
    """Input that does not parse; ``reply`` is what to send, ``close`` whether to hang up."""

    def __init__(
        self,
        reply: bytes | None = INVALID_COMMAND,
        message: str | None = None,
        *,
        close: bool = True,
    ) -> None:
        self.reply = reply
        self.close = close
        if message is None:
            message = reply.decode("ascii", "replace") if reply is not None else "protocol error"
        super().__init__(message)
