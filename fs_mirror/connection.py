"""One connection to mirrord: fs_mirror's side of the conversation, on Twisted.

``protocol.client.ClientConversation`` decides what to say; this adapter
feeds it lines, applies what it reports and decides *when* to ask for more.
A batch's serial is saved only once its records are applied, so the sn file
never runs ahead of the mirror.  A batch of a lone change asks for the
next one once it is saved; in a burst (a batch of ``ahead_from`` records or
more) NEXT goes out as soon as the batch is in, and the batches that come
while it is applied are held and then applied as one chunk
(``fs_mirror.ahead``): a burst is fetched in a few big runs, a single
change never waits.  At most ``chunk`` records are held (``init_chunk`` in
an INIT: fewer fetcher runs and syncfs), reading pauses past that, so a
multi-million record INIT or burst costs bounded memory.  In an INIT one
chunk is read and parsed ahead while the one before it is applied and
fetched (at most two in hand); the chunks still
reach the disk one after the other, in order, through the gate.  A chunk
that must wait (a full disk, a backend that cannot serve) is applied again
later on the same connection, never by a new INIT.

What outlives a connection (the sn file, the sink, the gate, the INIT
sweep) is ``fs_mirror.client.MirrorClient``'s; this module is the one
connection's work loop.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from cmdconfig.tls import channel_binding
from fs_mirror.ahead import Chunk, Held
from fs_mirror.progress import init_summary
from fs_mirror.sink import Sink
from fs_mirror.sweep import TooManyDeletes
from fs_sync.interface import BackendUnavailable, is_local_disk_error
from protocol.client import (
    BatchFinished,
    BatchStarted,
    ClientConversation,
    ClientEvent,
    ClientState,
    Failed,
    InitFinished,
    InitStarted,
    RecordReceived,
    Resumed,
    ResumeRefused,
    SendLine,
)
from protocol.errors import ProtocolError
from protocol.linebuffer import LineBuffer
from protocol.messages import encode_line
from protocol.records import Action, Record

if TYPE_CHECKING:
    from fs_mirror.client import MirrorClient

CLOSE_TIMEOUT = 5.0  # seconds a stopping fs_mirror waits for the server to let go
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # seconds between tries of a batch that must wait


class Stopped(Exception):
    """The connection closed or fs_mirror is stopping while a batch waited to be retried."""


def _must_wait(failure: Failure) -> str | None:
    """Why a failed batch should be retried as it is, later; None for other failures.

    A full or read-only mirror disk and a backend that cannot serve (down,
    refusing our password) are not about the records: the same batch is
    applied again once they pass, from the same serial, with no new INIT.
    """
    error = failure.value
    if isinstance(error, BackendUnavailable):
        return f"{error}" + ("; check the backend's user and password" if error.auth else "")
    if is_local_disk_error(error):
        assert isinstance(error, OSError)
        where = f" ({os.fsdecode(error.filename)})" if error.filename else ""
        return f"the mirror's disk refuses writes: {error.strerror}{where}"
    return None


def _counts(sink: Sink) -> tuple[int, int, int]:
    return (sink.stats.records, sink.stats.files, sink.stats.bytes)


class MirrorProtocol(protocol.Protocol):
    """One connection: a queue of received lines worked off one event at a time."""

    # An ITransport that is also an IPushProducer (pause/resume), set by
    # Twisted before connectionMade; zope interfaces are opaque to mypy.
    transport: Any

    def __init__(self, client: MirrorClient) -> None:
        self.client = client
        self.log = client.log
        self.buffer = LineBuffer()
        self.conversation: ClientConversation | None = None
        self.lines: deque[bytes] = deque()
        self.events: deque[ClientEvent] = deque()
        self.records: list[Record] = []
        self.session: str | None = None
        self.serial: int | None = None  # reached once the data in hand is applied
        self.initializing = False
        self._next_serial: int | None = None  # serial of the next record of a NEXT batch
        self._first: int | None = None  # serial of self.records[0] (NEXT batches)
        self.busy = False
        self.closed = False
        self._pumping = False
        self._paused = False
        self._init_start = (0.0, (0, 0, 0))
        self._abort_call: Any = None
        self._ahead: Deferred | None = None  # the INIT chunk being applied while the next is read
        # After INIT: batches read while a chunk is applied wait here (fs_mirror.ahead)
        self._held = Held(client.chunk)
        self._chunk: Deferred | None = None  # the NEXT chunk being applied, then saved
        self._in_batch = False  # between a NEXT batch's SERIAL and its EOF
        self._batch_size = 0  # records of the NEXT batch being read, so far
        self._room: list[Deferred] = []  # the work loop, waiting for _held to be taken

    # -- Twisted callbacks ---------------------------------------------------
    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client.connected(self, f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}")
        if self.client.stopping:
            self.closed = True
            self.transport.loseConnection()
            return
        # Work of a dropped connection may still be running: start once it has
        # finished and saved, so the SN we send is the newest.
        self.client.when_idle().addCallback(lambda _: self._start())

    def _start(self) -> None:
        if self.closed:
            return
        saved = self.client.saved
        if saved is not None and self.client.sink.needs_resync():
            self.log.warn("full resync: this mirror no longer knows every change it owes")
            saved = None
        self.conversation = ClientConversation(
            self.client.secret,
            saved,
            os.urandom(16).hex(),  # our own nonce, new for every connection
            lambda: channel_binding(self.transport),  # read when challenged: after the handshake
        )
        for line in self.conversation.start():
            self._send(line)

    def dataReceived(self, data: bytes) -> None:
        try:
            self.lines.extend(self.buffer.feed(data))
        except ProtocolError as e:
            self._abort(f"bad data from mirrord: {e}")
            return
        self._pump()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self._held.clear()  # read ahead, never applied: the next connection asks again
        if self._ahead is not None:  # still tracked: the next connection waits for it
            self._ahead.addErrback(lambda _: None)  # its failure ends with this connection
            self._ahead = None
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self.client.disconnected(self, reason)

    # -- the work loop ---------------------------------------------------------
    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.busy and not self.closed:
                if self.events:
                    self._handle(self.events.popleft())
                elif self.lines and self.conversation is not None:
                    self.events.extend(self.conversation.receive(self.lines.popleft()))
                else:
                    break
        finally:
            self._pumping = False
        if self.busy or self.closed:
            return
        if self.client.stopping:
            if self._chunk is None:
                self.close_gently()  # nothing in hand: stop here
        elif self._paused:
            self._paused = False
            self.transport.resumeProducing()

    def _run(self, work: Callable[[], Deferred], what: str) -> None:
        """Run async ``work`` with the connection paused; failures drop the connection."""
        self.busy = True
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        d = self.client.track(maybeDeferred(work))

        def done(_: Any) -> None:
            self.busy = False
            self._pump()

        def failed(failure: Failure) -> None:
            self.busy = False
            self._failed(failure, what)

        d.addCallbacks(done, failed)

    def _failed(self, failure: Failure, what: str) -> None:
        """Work of this connection failed: say so (unless it was stopped) and drop it."""
        if failure.check(Stopped):
            self._abort(None)
            return
        where = f"serial {self.client.saved[1]}" if self.client.saved else "a new INIT"
        fmt = "{what} failed: {why}; reconnecting to retry from {where}"
        self.client.health.failed(f"{what} failed: {failure.getErrorMessage()}")
        if failure.check(OSError):
            self.log.error(fmt, what=what, why=failure.getErrorMessage(), where=where)
        else:
            self.log.failure(fmt, failure, what=what, why=failure.value, where=where)
        self._abort(None)

    def _replay_plan(
        self, records: list[Record], first: int | None
    ) -> tuple[int, Callable[[int], None] | None]:
        """How many of ``records`` a killed run already applied, and how to note progress.

        A chunk with a MOVE notes how far its disk changes went (around the
        MOVEs that need it, and before its fetch): replaying such a MOVE
        after the records around it would take the source they made anew
        for the moved tree (``fs_mirror.replay``).
        """
        if first is None or self.session is None:
            return 0, None
        session, state = self.session, self.client.state
        done = state.load_applied()
        replayed = 0
        if done is not None and done[0] == session:
            replayed = max(0, min(len(records), done[1] - first + 1))
        if not any(r.action is Action.MOVE for r in records[replayed:]):
            return replayed, None
        return replayed, lambda index: state.save_applied(session, first + index)

    def _apply(
        self, records: list[Record], serial: int | None, init: bool, first: int | None = None
    ) -> Deferred:
        """Apply one chunk (``first``: the serial of its first record, after INIT);
        while the disk or the backend must be waited for, retry it.

        The connection stays open and paused meanwhile, so the place in the
        log (and an INIT in progress) is kept; replaying a chunk is safe
        because records are idempotent.
        """
        client, sink = self.client, self.client.sink
        result: Deferred = Deferred()
        delay = RETRY_FIRST

        def attempt() -> None:
            if self.closed or client.stopping:
                result.errback(Stopped())
                return

            def apply() -> Deferred:
                replayed, progress = self._replay_plan(records, first)  # a retry replays too
                return sink.apply_batch(
                    records,
                    serial,
                    init=init,
                    replayed=replayed,
                    progress=progress,
                    first=first,
                )

            d = client.gate.run(apply)
            d.addCallbacks(result.callback, retry_later)

        def retry_later(failure: Failure) -> None:
            nonlocal delay
            why = _must_wait(failure)
            if why is None:
                result.errback(failure)
                return
            client.health.failed(f"cannot apply records up to serial {serial}: {why}")
            self.log.error(
                "cannot apply records up to serial {serial}: {why}; retrying in {delay:.0f} s"
                " (the mirror stays at serial {saved})",
                serial=serial, why=why, delay=delay,
                saved=client.saved[1] if client.saved else "none yet",
            )  # fmt: skip
            client.reactor.callLater(delay, attempt)
            delay = min(delay * 2, RETRY_MAX)

        attempt()
        return result

    def _abort(self, message: str | None) -> None:
        if message:
            self.log.error("{message}; reconnecting", message=message)
            self.client.health.failed(message)
        self.closed = True
        self.lines.clear()
        self.events.clear()
        self.records = []
        self._held.clear()
        self.transport.loseConnection()

    def close_gently(self) -> None:
        """Close; abort if the peer has not let go in time (a TLS close_notify unanswered)."""
        self.transport.loseConnection()
        reactor = self.client.reactor
        if self._abort_call is None:
            self._abort_call = reactor.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    def _send(self, line: bytes) -> None:
        self.transport.write(encode_line(line, server=False))

    @property
    def working(self) -> bool:
        """Records are being applied (or wait to be): a stop lets them finish first."""
        return self.busy or self._chunk is not None

    def _next(self) -> None:
        """Ask for the next batch, unless asked already or a chunk's worth is held."""
        if self.client.stopping or self.closed or self.initializing:
            return
        assert self.conversation is not None
        if self.conversation.state is not ClientState.IDLE or self._held.full():
            return
        self._send(self.conversation.next())

    # -- events ----------------------------------------------------------------
    def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, SendLine):
            self._send(event.line)
        elif isinstance(event, RecordReceived):
            if not self.initializing and self._next_serial is not None:
                if not self.records:  # records of NEXT batches are numbered one by one
                    self._first = self._next_serial
                self._next_serial += 1
                self._batch_size += 1
            self.records.append(event.record)
            if self.initializing:
                if len(self.records) >= self.client.init_chunk:
                    self._run(self._flush_ahead, "applying records")
            elif len(self._held) + len(self.records) >= self.client.chunk:
                self._hand_over(ends=False)  # a chunk's worth: no need to wait for the EOF
        elif isinstance(event, InitStarted):
            self.session, self.serial, self.initializing = event.session, event.serial, True
            self.client.health.heard(event.session, event.serial)
            self.client.linked()
            self.records = []
            self.client.begin_init()
            self._init_start = (self.client.reactor.seconds(), _counts(self.client.sink))
            self.client.progress.begin(self._init_start[1])
            self.log.info("full sync: session {s} at serial {n}", s=event.session, n=event.serial)
        elif isinstance(event, InitFinished):
            self.session, self.serial = event.session, event.serial
            self._run(self._finish_init, "applying the INIT stream")
        elif isinstance(event, Resumed):
            self.session, self.serial = event.session, event.serial
            self._next_serial = event.serial + 1
            self.log.info("resumed session {s} at serial {n}", s=event.session, n=event.serial)
            self.client.health.heard(event.session, event.serial)
            self.client.linked()
            self.client.in_step(event.serial)
            self._next()
        elif isinstance(event, BatchStarted):
            self.serial = event.serial
            self.records = []
            self._in_batch = True
            self._batch_size = 0
            if self.session is not None:
                self.client.health.heard(self.session, event.serial)
        elif isinstance(event, BatchFinished):
            self.serial = event.serial
            self._in_batch = False
            held = self._chunk is not None  # a chunk in hand: this batch waits behind it
            self._hand_over(ends=True)
            if held or self._batch_size >= self.client.ahead_from:
                self._next()  # a burst: read the next batch while this one is applied
        elif isinstance(event, ResumeRefused):
            self.log.warn("full resync: server said {reason}", reason=event.reason)
        elif isinstance(event, Failed) and event.fatal:
            self.client.credentials_refused(event.reason)
            self._abort(None)
        elif isinstance(event, Failed):
            self._abort(f"mirrord conversation failed: {event.reason}")

    def _flush(self, records: list[Record] | None = None) -> Deferred:
        if records is None:
            records, self.records = self.records, []
        if not records:
            return succeed(None)
        if self.initializing:
            self.client.mark_seen(records)
        sink, serial, init = self.client.sink, self.serial, self.initializing
        d = self._apply(records, serial, init)
        if init:

            def progressed(result: object) -> object:
                self.client.progress.update(_counts(sink))
                return result

            d.addCallback(progressed)
        return d

    def _flush_ahead(self) -> Deferred:
        """An INIT chunk: applied once the one before it has been, read on meanwhile.

        Returns the work of the chunk before: the connection reads the next
        chunk as soon as that has finished, while this one is applied and
        fetched.  This chunk starts only after the one before succeeded
        (retries included): a failed chunk drops the connection, and what was
        read after it is never applied.
        """
        records, self.records = self.records, []
        before = self._ahead
        this: Deferred = Deferred()
        self._ahead = self.client.track(this)
        if before is None:
            self._flush(records).chainDeferred(this)
            return succeed(None)

        def start(result: object) -> object:
            self._flush(records).chainDeferred(this)
            return result

        def never(failure: Failure) -> Failure:
            this.errback(Stopped())
            return failure

        before.addCallbacks(start, never)
        return before

    def _finish_init(self) -> Deferred:
        before, self._ahead = self._ahead, None
        d = before if before is not None else succeed(None)
        d.addCallback(lambda _: self._flush())
        d.addCallback(lambda _: self.client.end_init())
        d.addCallback(lambda _: self._saved_init())
        d.addErrback(self._sweep_refused)
        return d

    def _sweep_refused(self, failure: Failure) -> None:
        """The INIT would delete too much of the mirror: keep it, say so and stop."""
        failure.trap(TooManyDeletes)
        self.client.fatal(str(failure.value))
        raise Stopped()

    def _saved_init(self) -> None:
        assert self.session is not None and self.serial is not None
        self.client.save(self.session, self.serial)
        self._next_serial = self.serial + 1
        self.initializing = False
        self.client.progress.finish()
        began, base = self._init_start
        records, files, size = (n - b for n, b in zip(_counts(self.client.sink), base, strict=True))
        secs = self.client.reactor.seconds() - began
        self.log.info(
            "{summary}, session {session} at serial {serial}",
            summary=init_summary(records, files, size, secs),
            session=self.session,
            serial=self.serial,
        )
        self.client.linked()
        self.client.in_step(self.serial)
        self._next()

    # -- after INIT: batches applied while the next are read (fs_mirror.ahead) --
    def _hand_over(self, ends: bool) -> None:
        """The batch's records so far join those held; applied now if no chunk is in hand.

        ``ends``: the batch ends here. Reading stops while a chunk's worth is held.
        """
        self._held.add(self.records, self._first, self.serial, ends)
        self.records = []
        if self._chunk is None:
            self._start_chunk()
        elif self._held.full():
            self._run(self._wait_for_room, "waiting for the chunk being applied")

    def _wait_for_room(self) -> Deferred:
        room: Deferred = Deferred()
        self._room.append(room)
        return room

    def _start_chunk(self) -> None:
        chunk = self._held.take()
        what = f"applying the batch up to serial {chunk.serial}"
        d = self._apply_chunk(chunk)
        self._chunk = d
        # may run at once (and start the next chunk), so only after _chunk is set
        d.addCallbacks(self._chunk_done, lambda failure: self._chunk_failed(failure, what))
        self.client.track(d)

    def _apply_chunk(self, chunk: Chunk) -> Deferred:
        d = succeed(None)
        if chunk.records:
            d = self._apply(chunk.records, chunk.serial, init=False, first=chunk.first)

        def saved(_: Any) -> None:
            if chunk.saves is None:  # cut inside a batch: its end saves
                return
            assert self.session is not None
            self.client.save(self.session, chunk.saves)
            if self.client.sink.needs_resync():
                self._abort("the mirror needs a full resync")  # the next connection INITs

        return d.addCallback(saved)

    def _chunk_done(self, _: Any) -> None:
        self._chunk = None
        room, self._room = self._room, []
        # What is held goes next, once the batch being read has ended (bytes already
        # on their way, not a timer) or a chunk's worth is held.
        ready = self._held and (not self._in_batch or self._held.full())
        if ready and not self.closed and not self.client.stopping:
            self._start_chunk()
        for waiter in room:
            waiter.callback(None)
        if not self.closed:
            self._next()
            self._pump()

    def _chunk_failed(self, failure: Failure, what: str) -> None:
        self._chunk = None
        self._held.clear()  # what came after a failed chunk is never applied
        room, self._room = self._room, []
        for waiter in room:
            waiter.errback(Stopped())
        self._failed(failure, what)
