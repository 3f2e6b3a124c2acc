"""``mirrord -k``: a unix-socket control channel to the running daemon.

One JSON object a line each way, so the channel is scriptable with ``nc -U``
and needs no second protocol parser. The socket lives in the data directory
with mode 0600: whoever may read the mirrored data may steer the daemon.

Requests: ``{"cmd": "status"}``, ``{"cmd": "include", "path": P}``,
``{"cmd": "exclude", "path": P}``. Replies: ``{"ok": true, ...}`` (status
fields, or ``"result"`` text for include/exclude) or ``{"ok": false, "error": E}``.
Paths are bytes in the daemon; on the wire they are ``os.fsdecode`` strings
(surrogate escapes survive JSON), so any byte name round-trips.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet import protocol as tprotocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

MAX_LINE = 65536
COMMANDS = ("status", "include", "exclude")

log = Logger()


class ControlError(OSError):
    """The daemon did not answer in time or answered nonsense (an OSError, like a refusal)."""


class BadRequest(ValueError):
    """A request line the channel does not understand (answered ok=false)."""


class Handler(Protocol):
    """What the daemon exposes to the control channel (methods may return Deferreds)."""

    def status(self) -> Any: ...
    def include(self, path: bytes) -> Any: ...
    def exclude(self, path: bytes) -> Any: ...


def jsonable(value: Any) -> Any:
    """``value`` with bytes turned into fsdecoded strings, recursively."""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if isinstance(value, dict):
        return {jsonable(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(jsonable(reply), sort_keys=True).encode("ascii") + b"\n"


class ControlProtocol(LineReceiver):
    """Answers each request line with one reply line, in order."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE
    transport: Any  # a unix-socket transport once connected

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._last: defer.Deferred[Any] = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        # chain on the previous request so replies keep the order of requests
        self._last = self._last.addCallback(lambda _: self._answer(line))

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self.transport.write(_encode({"ok": False, "error": "request too long"}))
        self.transport.loseConnection()

    def _answer(self, line: bytes) -> defer.Deferred[None]:
        d = defer.maybeDeferred(self._dispatch, line)
        d.addCallback(self._reply_ok)
        d.addErrback(self._reply_error)
        return d

    def _dispatch(self, line: bytes) -> Any:
        try:
            request = json.loads(line)
        except ValueError as e:
            raise BadRequest(f"request is not JSON: {e}") from None
        if not isinstance(request, dict):
            raise BadRequest("request must be a JSON object")
        cmd = request.get("cmd")
        if cmd not in COMMANDS:
            raise BadRequest(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
        if cmd == "status":
            return self.handler.status()
        path = request.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise BadRequest(f"{cmd} needs an absolute path")
        method = self.handler.include if cmd == "include" else self.handler.exclude
        return method(os.fsencode(path))

    def _reply_ok(self, result: Any) -> None:
        reply: dict[str, Any] = {"ok": True}
        if isinstance(result, dict):
            reply.update(result)
        elif result is not None:
            reply["result"] = result
        self._write(reply)

    def _reply_error(self, failure: Any) -> None:
        if not failure.check(ValueError, OSError, KeyError):
            log.failure("control request failed", failure)
        message = str(failure.value) or failure.type.__name__
        self._write({"ok": False, "error": message})

    def _write(self, reply: dict[str, Any]) -> None:
        if self.transport is not None and self.connected:
            self.transport.write(_encode(reply))


class ControlFactory(tprotocol.Factory):
    """Builds one ControlProtocol per control connection, all sharing ``handler``."""

    noisy = False  # our own log lines say when we listen and stop

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def buildProtocol(self, addr: Any) -> ControlProtocol:  # noqa: N802
        proto = ControlProtocol(self.handler)
        proto.factory = self
        return proto


def listen_control(factory: ControlFactory, reactor: Any, path: str) -> Any:
    """Listen on the unix socket ``path`` (mode 0600), replacing a stale socket.

    Raises ControlError when another live daemon already answers there.
    """
    if os.path.exists(path):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listening: left over from a crash
        else:
            raise ControlError(f"{path}: another mirrord is already running on this datadir")
    return reactor.listenUNIX(path, factory, mode=0o600)


def request(
    socket_path: str, cmd: str, path: str | bytes | None = None, timeout: float = 10
) -> dict[str, Any]:
    """Send one request to the daemon at ``socket_path`` and return its reply.

    Blocking, plain sockets: this runs in the ``mirrord -k`` command line. A
    daemon that is not there raises the socket's own OSError (ENOENT,
    ECONNREFUSED); no answer in time or an unreadable one raises ControlError.
    """
    message: dict[str, Any] = {"cmd": cmd}
    if path is not None:
        message["path"] = os.fsdecode(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(_encode(message))
            data = b""
            while not data.endswith(b"\n"):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
                if len(data) > 64 * MAX_LINE:
                    raise ControlError(f"{socket_path}: reply too long")
    except TimeoutError:
        raise ControlError(f"{socket_path}: no answer within {timeout:g}s") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"{socket_path}: the daemon sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{socket_path}: the daemon sent an unreadable reply")
    return reply


def format_status(d: dict[str, Any]) -> str:
    """Render a status reply for people."""
    if not d.get("ok", True):
        return f"error: {d.get('error', 'unknown error')}"
    head, oldest = d.get("head"), d.get("oldest")
    watched = d.get("watched")
    if isinstance(watched, list | tuple):
        watched = len(watched)
    polled = d.get("polled", 0)  # a count; older daemons sent the list of sub-trees
    polled_list = polled if isinstance(polled, list | tuple) else []
    clients = d.get("clients") or []
    lines = [
        f"session:          {d.get('session', '?')}",
        f"head serial:      {head}",
        f"oldest retained:  {oldest}",
    ]
    roots = d.get("roots")
    if roots:
        lines.append(f"included roots:   {len(roots)}")
        lines += [f"  {r}" for r in roots]
    lines += [
        f"watched dirs:     {watched if watched is not None else '?'}",
        f"polled subtrees:  {len(polled_list) if isinstance(polled, list | tuple) else polled}",
    ]
    lines += [f"  {p}" for p in polled_list]
    lines.append(f"overflows:        {d.get('overflows', '?')}")
    lines.append(f"clients:          {len(clients)}")
    for c in clients:
        serial = c.get("serial")
        lag = c.get("lag")
        if lag is None and isinstance(serial, int) and isinstance(head, int):
            lag = head - serial
        serial_text = "-" if serial is None else str(serial)
        lag_text = "-" if lag is None else str(lag)
        if c.get("lag_seconds") is not None:
            lag_text += f" ({c['lag_seconds']:g}s)"
        lines.append(
            f"  {c.get('peer', '?')}  {c.get('state', '?')}  serial {serial_text}"
            f"  lag {lag_text}  sent {c.get('bytes_sent', 0)} bytes"
        )
    return "\n".join(lines)
