"""fs_mirror's client: what outlives a connection to mirrord.

``MirrorClient`` is the protocol factory.  It holds the sn file, the sink
(the mirror or report mode), the gate shared with rotation, the INIT sweep
(after a full INIT, mirror entries the stream did not name are removed:
``fs_mirror.sweep``) and the stopping logic; each connection's work loop is
``fs_mirror.connection.MirrorProtocol``.  ``twisted.application.internet.
ClientService`` reconnects it with backoff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IAddress
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmdconfig.notify import tell
from fs_mirror.connection import MirrorProtocol
from fs_mirror.explain import tls_problem
from fs_mirror.health import Health
from fs_mirror.progress import InitProgress, NoProgress
from fs_mirror.sink import Sink
from fs_mirror.state import State
from fs_mirror.sweep import InitSweep
from protocol.records import Action, Record

RunBlocking = Callable[..., Deferred]
INIT_CHUNK = 8192  # records per applied chunk in an INIT (the service's choice)
#: most records applied as one chunk after INIT (batches read while one is applied
#: are held up to this and go together: fs_mirror.ahead)
NEXT_CHUNK = 8192
#: a batch of at least this many records asks for the next one at once, while it
#: is applied; a smaller one (a lone change) asks once it is saved, as the
#: fetch it waits for is short and has the machine to itself
AHEAD_FROM = 16


class MirrorClient(protocol.Factory):
    """What outlives a connection: the sn file, the sink, the rotation gate."""

    protocol = MirrorProtocol
    noisy = False

    def __init__(
        self,
        *,
        state: State,
        sink: Sink,
        reactor: Any,
        secret: bytes | None = None,
        chunk: int = 1024,
        init_chunk: int | None = None,
        ahead_from: int = AHEAD_FROM,
        gate: DeferredLock | None = None,
        run_blocking: RunBlocking | None = None,
        on_fatal: Callable[[str], None] | None = None,
        log: Logger | None = None,
        progress: InitProgress | None = None,
        max_delete: float = 1.0,
    ) -> None:
        self.state = state
        self.progress = progress or NoProgress()
        self.sink = sink
        self.reactor = reactor
        self.secret = secret
        self.chunk = chunk
        self.init_chunk = init_chunk or chunk
        self.ahead_from = ahead_from
        self.gate = gate or DeferredLock()
        self.run_blocking = run_blocking or self._in_thread
        self.on_fatal = on_fatal
        self.log = log or Logger()
        self.stopping = False
        self.current: MirrorProtocol | None = None
        self._stop_waiters: list[Deferred] = []
        self._inflight = 0
        self._idle_waiters: list[Deferred] = []
        self._ready_told = False  # READY=1 is sent once per process
        self.saved = state.load()
        # what --status and /metrics show; the service points its ``changed`` at the file
        self.health = Health(sink.stats, reactor.seconds, self.saved)
        self.sweep = InitSweep(state.datadir, state.staging)
        self.max_delete = max_delete

    def buildProtocol(self, addr: IAddress | None) -> MirrorProtocol:
        return MirrorProtocol(self)

    def _in_thread(self, f: Callable[..., Any], *args: Any) -> Deferred:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    # -- called by the protocol ------------------------------------------------
    def connected(self, proto: MirrorProtocol, peer: str) -> None:
        self.current = proto
        self.log.info("connected to mirrord at {peer}", peer=peer)

    def disconnected(self, proto: MirrorProtocol, reason: Failure) -> None:
        if self.current is proto:
            self.current = None
            self.health.link(False)
        if not self.stopping:
            tls = tls_problem(reason)
            if tls:
                self.log.error("TLS: {why}; nothing applied, reconnecting", why=tls)
                self.health.failed(f"TLS: {tls}")
                return
            why = reason.getErrorMessage()
            self.log.info("connection to mirrord closed ({why}); reconnecting", why=why)
            return
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)

    def track(self, work: Deferred) -> Deferred:
        """Count ``work`` as in flight until it fires (see ``when_idle``)."""
        self._inflight += 1

        def finished(result: Any) -> Any:
            self._inflight -= 1
            if not self._inflight:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        return work.addBoth(finished)

    def when_idle(self) -> Deferred:
        """Fires when no connection's work is in flight."""
        if not self._inflight:
            return succeed(None)
        d: Deferred = Deferred()
        self._idle_waiters.append(d)
        return d

    def in_step(self, serial: int) -> None:
        """Connected and at a serial mirrord knows (resumed, or INIT applied): READY=1, once;
        and a ``STATUS=`` that replaces the INIT's progress."""
        if not self._ready_told:
            self._ready_told = True
            tell(b"READY=1", self.log)
        tell(b"STATUS=in step with mirrord from serial %d" % serial, self.log)

    def linked(self) -> None:
        """In step with mirrord on this connection (for --status)."""
        self.health.link(True)

    def credentials_refused(self, reason: str) -> None:
        """mirrord refused our secret, or wants one we lack: retrying cannot help, stop."""
        message = (
            f"authentication failed ({reason}): check auth.secret-from, it must hold"
            " the same secret as mirrord's auth.secret-from"
        )
        self.health.failed(message)
        if self.on_fatal:
            self.on_fatal(message)

    def fatal(self, message: str) -> None:
        """Stop fs_mirror for good: retrying cannot help (exit status 1)."""
        self.health.failed(message)
        if self.on_fatal is not None:
            self.on_fatal(message)
        else:
            self.log.error("{message}", message=message)

    def save(self, session: str, serial: int) -> None:
        self.sink.checkpoint()  # what this serial relies on is on disk before it
        self.state.save(session, serial)
        self.saved = (session, serial)
        self.health.saved(session, serial)

    def begin_init(self) -> None:
        # The INIT names everything again: what was owed before it is moot
        # (what its own fetches miss is owed anew, saved with its serial).
        self.sink.resynced()
        if self.sink.mirrors:
            self.sweep.begin()

    def mark_seen(self, records: list[Record]) -> None:
        paths = [r.path for r in records]
        self.sweep.mark(paths + [r.target for r in records if r.target and r.action is Action.MOVE])
        for record in records:
            if record.meta.unreadable:
                self.sweep.protect(record.path)

    def end_init(self) -> Deferred:
        """Remove, in a thread, what the INIT did not name."""

        def removed(path: bytes) -> None:
            self.log.debug("removed {path}: not on the worker", path=os.fsdecode(path))

        def report(count: int) -> None:
            if count:
                self.log.info("removed {count} local entries the worker no longer has", count=count)

        d = self.gate.run(self.run_blocking, self.sweep.finish, removed, self.max_delete)
        d.addCallback(report)
        return d.addCallback(lambda _: self.sink.finish_init())

    # -- stopping ----------------------------------------------------------------
    def stop(self) -> Deferred:
        """Finish the work in hand (and save its serial), then close; never ask for more."""
        self.stopping = True
        proto = self.current
        if proto is None or proto.closed:
            return succeed(None)
        finished: Deferred = Deferred()
        self._stop_waiters.append(finished)
        if not proto.working:
            proto.close_gently()
        return finished
