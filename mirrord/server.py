"""The mirror protocol on a socket: a thin Twisted adapter around ServerConversation.

All protocol decisions live in ``protocol.conversation``; this module only moves
bytes and performs the conversation's outputs against the store and the journal.
Why it is shaped as it is:

- The INIT snapshot of millions of entries is streamed in chunks, one chunk per
  reactor turn, and each connection is a push producer for its transport: when
  a slow client stops reading, the transport pauses us and nothing more is read
  from the store until it drains. No BDB cursor outlives one ``iter_tree`` call.
- A NEXT with nothing new parks on ``journal.wait_after``; a parked client is
  legitimately idle, so the idle timeout is suspended while it waits.
- Anything a client sends can at worst close its own connection: every entry
  point from the reactor is guarded, logged with the peer, and aborts only it.
- What one client costs is bounded (contract 2.3): while its transport holds
  more unsent output than its buffer size, the transport pauses us and we
  stop *reading* from it too, so a client that sends without reading blocks
  on its own socket instead of filling our memory with replies; a client has
  ``START_WITHIN`` seconds to start; past ``max-clients`` a connection gets
  ``BUSY`` and a close (``mirrord.clients``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, interfaces, protocol
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer  # type: ignore[import-untyped]

from cmdconfig.tls import channel_binding
from mirrord.initstream import SnapshotStream

if TYPE_CHECKING:
    from mirrord.clients import MirrorServerFactory
from protocol.conversation import (
    BeginInit,
    CheckResume,
    Close,
    ResumeResult,
    Send,
    ServerConversation,
    State,
    WantNext,
)
from protocol.errors import ProtocolError
from protocol.linebuffer import MAX_LINE, LineBuffer
from protocol.messages import (
    SERIAL_OVERDUE,
    batch_lines,
    encode_line,
    init_head,
)

START_WITHIN = 10.0  # seconds a client has to complete START (and AUTH): contract 2.3


_NOT_STARTED = (State.NEW, State.CHALLENGED)  # the START deadline runs in these

# What ``-k status`` calls a client's state, read off its conversation.
_PHASES = {State.STREAMING: "init", State.REALTIME: "realtime", State.WAITING: "realtime"}


def peer_text(address: Any) -> str:
    """``host:port`` (``[v6]:port``) of a client address, for the log and ``-k status``."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(interfaces.IPushProducer)
class MirrorProtocol(protocol.Protocol, TimeoutMixin):
    """One client connection; also the push producer feeding its own transport."""

    factory: MirrorServerFactory
    transport: Any  # ITCPTransport and IProducer: more than Protocol's ITransport says
    _conv: ServerConversation  # made in connectionMade, with the factory's secret

    def __init__(self) -> None:
        self.peer = "?"
        self._closed_as: str | None = None  # the phase it had when closed
        self.serial: int | None = None
        self.bytes_sent = 0
        self._closing = False
        self._paused = False
        self._producing = False  # registered with the transport
        self._next_pending = False  # a WantNext waiting for the transport to drain
        self._init: SnapshotStream | None = None  # the INIT being streamed, if any
        self._init_began = self._init_said = 0.0  # when it began, when progress was last said
        self._init_call: Any = None
        self._start_call: Any = None  # closes a client that has not started in time
        self._waiter: defer.Deferred[Any] | None = None

    @property
    def phase(self) -> str:
        """connected, init, realtime or parked (waiting for records): for ``-k status``."""
        if self._closed_as is not None:
            return self._closed_as
        if self._waiter is not None:
            return "parked"
        return _PHASES.get(self._conv.state, "connected")

    # -- reactor entry points ------------------------------------------------

    def callLater(self, period: float, func: Callable[[], Any]) -> Any:  # noqa: N802
        """TimeoutMixin's clock: the injected reactor, never the global one."""
        return self.factory.reactor.callLater(period, func)

    def connectionMade(self) -> None:  # noqa: N802
        self.peer = peer_text(self.transport.getPeer())
        self._conv = ServerConversation(
            self.factory.secret,
            os.urandom(16).hex(),  # a fresh nonce for every connection
            lambda: channel_binding(self.transport),  # read at AUTH: the handshake is done
        )
        self._buffer = LineBuffer(MAX_LINE)
        self.transport.registerProducer(self, True)
        self._producing = True
        self.factory.connected(self)
        self.setTimeout(self.factory.timeout or None)
        self._start_call = self.factory.reactor.callLater(START_WITHIN, self._not_started)
        self.factory.log.info("client {peer} connected", peer=self.peer)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._closing:
            return
        self.resetTimeout()
        self._guard(self._receive, data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self._closing = True
        self.setTimeout(None)
        self._stop_work()
        self.factory.disconnected(self)
        self.factory.log.info(
            "client {peer} disconnected at serial {serial}", peer=self.peer, serial=self.serial
        )

    def timeoutConnection(self) -> None:  # noqa: N802
        self.factory.log.info("client {peer} idle too long, closing", peer=self.peer)
        self._close(abort=True)

    def _not_started(self) -> None:
        self._start_call = None
        self.factory.log.info(
            "client {peer} did not start within {s:.0f} s, closing", peer=self.peer, s=START_WITHIN
        )
        self._close(abort=True)

    def pauseProducing(self) -> None:  # noqa: N802
        """The transport's buffer is full: stop writing, and stop reading this client."""
        self._paused = True
        if self._init_call is not None and self._init_call.active():
            self._init_call.cancel()
        self._init_call = None
        if not self._closing:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        self._paused = False
        if self._closing:
            return
        self.transport.resumeProducing()
        if self.phase == "init":
            self._schedule_chunk()
        elif self._next_pending:
            self._guard(self._want_next)

    def stopProducing(self) -> None:  # noqa: N802
        self._stop_work()

    # -- conversation --------------------------------------------------------

    def _guard(self, func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)
        except Exception:
            self.factory.log.failure("error serving client {peer}, closing it", peer=self.peer)
            self._close(abort=True)

    def _receive(self, data: bytes) -> None:
        try:
            for line in self._buffer.feed(data):
                if self._closing:
                    return
                self._perform(self._conv.receive(line))
                if self._start_call is not None and self._conv.state not in _NOT_STARTED:
                    self._start_call.cancel()
                    self._start_call = None
        except ProtocolError as e:
            self.factory.log.info("client {peer}: {error}", peer=self.peer, error=e)
            self._perform(self._conv.protocol_error(e))

    def _perform(self, outputs: list[Any]) -> None:
        for out in outputs:
            if self._closing:
                return
            if isinstance(out, Send):
                self._send(out.line)
            elif isinstance(out, Close):
                self._close()
            elif isinstance(out, BeginInit):
                self._begin_init()
            elif isinstance(out, CheckResume):
                self._perform(self._conv.resume_checked(self._check(out.session, out.serial)))
            elif isinstance(out, WantNext):
                self._want_next()
            else:
                raise TypeError(f"unknown conversation output {out!r}")

    def _check(self, session: str, serial: int) -> ResumeResult:
        store = self.factory.store
        if session.lower() != store.session.lower():
            return ResumeResult.UNKNOWN_SESSION
        if not store.oldest - 1 <= serial <= store.head:
            return ResumeResult.SERIAL_OUT_OF_RANGE
        self.serial = serial
        self.factory.log.info("client {peer} resumed at {serial}", peer=self.peer, serial=serial)
        return ResumeResult.OK

    # -- INIT stream ---------------------------------------------------------

    def _begin_init(self) -> None:
        store = self.factory.store
        self.serial = None
        self._init = SnapshotStream(store, self.factory.chunk)
        self._write(init_head(store.session, self._init.serial))
        self._init_began = self._init_said = self.factory.reactor.seconds()
        self.factory.log.info(
            "client {peer} INIT at serial {serial}", peer=self.peer, serial=self._init.serial
        )
        self._schedule_chunk()

    def _schedule_chunk(self) -> None:
        if self._paused or self._closing or self._init_call is not None:
            return
        self._init_call = self.factory.reactor.callLater(0, self._guard, self._init_chunk)

    def _init_chunk(self) -> None:
        self._init_call = None
        stream = self._init
        if self._paused or self._closing or self.phase != "init" or stream is None:
            return
        data = stream.chunk()
        if data:
            self._write(data)
            self.resetTimeout()  # progress: a slow but reading client is not idle
        if not stream.done:
            self._init_progress(stream)
            self._schedule_chunk()
            return
        self._init, self.serial = None, stream.serial
        seconds = self.factory.reactor.seconds() - self._init_began
        if self._init_said != self._init_began and self.factory.status is not None:
            self.factory.status(f"client {self.peer} INIT sent: {stream.sent} entries")
        self.factory.log.info(
            "client {peer} INIT sent, at serial {serial}: {entries} entries in {seconds:.1f}s",
            peer=self.peer,
            serial=self.serial,
            entries=stream.sent,
            seconds=seconds,
        )
        self._perform(self._conv.init_done())

    def _init_progress(self, stream: SnapshotStream) -> None:
        """Every ``progress_every`` seconds of a long INIT: how far it is, logged and told."""
        now = self.factory.reactor.seconds()
        if now - self._init_said < self.factory.progress_every:
            return
        self._init_said = now
        rate = stream.sent / max(now - self._init_began, 1e-6)
        text = f"client {self.peer} INIT: {stream.sent} entries sent, {rate:.0f}/s"
        self.factory.log.info("{progress}", progress=text)
        if self.factory.status is not None:
            self.factory.status(text)

    # -- NEXT ----------------------------------------------------------------

    def _want_next(self) -> None:
        self._next_pending = False
        if self._closing:
            return
        if self._paused:
            self._next_pending = True
            return
        store = self.factory.store
        assert self.serial is not None, "NEXT before INIT or SN"
        if self.serial < store.oldest - 1:
            self.factory.log.info(
                "client {peer} at {serial} fell behind the retained log (oldest {oldest})",
                peer=self.peer,
                serial=self.serial,
                oldest=store.oldest,
            )
            self._send(SERIAL_OVERDUE)
            self._close()
            return
        if store.head > self.serial:
            records = store.log_after(self.serial, self.factory.batch)
            if not records:
                raise RuntimeError(f"no records after {self.serial} below head {store.head}")
            self._send_batch(records)
            return
        self._park()

    def _send_batch(self, records: list[tuple[int, bytes]]) -> None:
        last = records[-1][0]
        self._write(batch_lines(last, [line for _, line in records]))
        self.serial = last
        self._perform(self._conv.batch_sent())

    def _park(self) -> None:
        self.setTimeout(None)
        waiter = self.factory.journal.wait_after(self.serial)
        self._waiter = waiter
        waiter.addCallbacks(self._woken, self._wait_failed)

    def _woken(self, _: object) -> None:
        self._waiter = None
        if self._closing:
            return
        self.setTimeout(self.factory.timeout or None)
        self._guard(self._want_next)

    def _wait_failed(self, failure: Any) -> None:
        self._waiter = None
        if failure.check(defer.CancelledError) or self._closing:
            return
        self.factory.log.failure("waiting for records for {peer}", failure, peer=self.peer)
        self._close(abort=True)

    # -- output and teardown -------------------------------------------------

    def _send(self, line: bytes) -> None:
        self._write(encode_line(line))

    def _write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.transport.write(data)

    def _stop_work(self) -> None:
        for call in (self._init_call, self._start_call):
            if call is not None and call.active():
                call.cancel()
        self._init_call = self._start_call = None
        self._next_pending = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.cancel()

    def _close(self, abort: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._closed_as = self.phase
        self.setTimeout(None)
        self._stop_work()
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def status(self) -> dict[str, Any]:
        """What ``mirrord -k status`` shows about this client."""
        head = self.factory.store.head
        now = self.factory.reactor.seconds()
        times = self.factory.journal.head_times
        behind = None if self.serial is None else times.lag_seconds(self.serial, head, now)
        return {
            "peer": self.peer,
            "state": self.phase,
            "serial": self.serial,
            "lag": None if self.serial is None else head - self.serial,
            "lag_seconds": None if behind is None else round(behind, 3),
            "bytes_sent": self.bytes_sent,
        }
