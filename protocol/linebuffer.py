"""Incremental line splitting with the 64 KiB cap built in.

Bytes arrive in arbitrary chunks; lines end with LF, optionally preceded by
CR. The search for the next LF resumes where the previous one stopped, so the
total cost is O(bytes) however the stream is chunked, and a peer that never
sends a newline can make us hold at most ``max_length`` bytes.
"""

from __future__ import annotations

from protocol.errors import INVALID_COMMAND, ProtocolError

__all__ = ["MAX_LINE", "LineBuffer"]

MAX_LINE = 65536


class LineBuffer:
    """Feed bytes in, get complete lines (without CR/LF) out."""

    def __init__(self, max_length: int = MAX_LINE) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no LF

    @property
    def pending(self) -> bytes:
        """The partial line received so far (no terminator yet)."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the lines it completed, in order.

        Raises ``ProtocolError(INVALID_COMMAND, close=True)`` once a line is
        longer than ``max_length`` bytes (terminator excluded), also before its
        LF has arrived; lines completed earlier in the same call are dropped
        with it, as the connection is closing anyway.
        """
        buffer = self._buffer
        buffer += data
        lines = []
        start = 0
        while True:
            end = buffer.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end
            self._check(stop - start)
            lines.append(bytes(buffer[start:stop]))
            start = end + 1
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        # A partial line may end in the CR of a CRLF whose LF is still to come.
        partial = len(buffer) - (1 if buffer.endswith(b"\r") else 0)
        self._check(partial)
        return lines

    def _check(self, length: int) -> None:
        if length > self.max_length:
            self._buffer.clear()
            self._scanned = 0
            raise ProtocolError(
                INVALID_COMMAND, f"line longer than {self.max_length} bytes", close=True
            )
