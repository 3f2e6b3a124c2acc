"""fs_mirror's service tree: config in, running client (and daily rotation) out.

Wiring only: the sn file is taken first (a second fs_mirror stops here),
then the sink (an ``Applier`` over the fs_sync fetcher, or the report-mode
reporter), the endpoint (TCP, or TLS verified against ``tls.ca``) and a
``ClientService`` that reconnects with exponential backoff capped at
``reconnect.max``.  Rotation and batches share one gate (``fs_mirror.gate``,
also a file lock that ``fs_mirror --rotate`` takes): a rotation never sees a
half-applied batch.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from cmdconfig import CommandError
from cmdconfig.metrics import MetricsService
from cmdconfig.notify import Watchdog, tell
from cmdconfig.tls import twisted_ssl
from fs_mirror.apply import Applier
from fs_mirror.backend import REPORT, backend_spec, scratch_dirs
from fs_mirror.client import INIT_CHUNK, NEXT_CHUNK, MirrorClient
from fs_mirror.gate import BatchLock, FileGate
from fs_mirror.metrics import metrics
from fs_mirror.owed import OWED_NAME, Owed
from fs_mirror.progress import InitProgress, Progresses, SaidProgress
from fs_mirror.report import Reporter
from fs_mirror.rotate import RotateError, check_backdir, rotate
from fs_mirror.sink import report_sink
from fs_mirror.state import State, StateCorrupt, StateLocked
from fs_mirror.statusfile import StatusFile, status_path
from fs_sync.registry import make_fetcher

log = Logger(namespace="fs_mirror")


def next_run(now: float, at: str) -> float:
    """Seconds from ``now`` (epoch) to the next local wall-clock ``HH:MM``."""
    hour, minute = (int(part) for part in at.split(":"))
    current = datetime.datetime.fromtimestamp(now)
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target = (current + datetime.timedelta(days=1)).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
    return max(target.timestamp() - now, 0.0)


class DailyRotation(Service):
    """Runs ``job`` every day at ``at`` (local time), rescheduled from the wall clock."""

    def __init__(self, at: str, job: Callable[[datetime.date], Deferred], reactor: Any) -> None:
        self.at, self.job, self.reactor = at, job, reactor
        self._call: Any = None  # an IDelayedCall (zope interfaces are opaque to mypy)
        self._running: Deferred | None = None

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def _schedule(self) -> None:
        delay = next_run(self.reactor.seconds(), self.at)
        self._call = self.reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        today = datetime.date.fromtimestamp(self.reactor.seconds())
        d = self._running = self.job(today)

        def done(result: object) -> None:
            self._running = None
            if self.running:
                self._schedule()

        d.addBoth(done)

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self._running


def _status(text: str) -> None:
    tell(b"STATUS=" + text.encode(errors="backslashreplace"), log)


def _log_progress(text: str) -> None:
    log.info("{progress}", progress=text)


def _then(_: object, step: Callable[[], Deferred[None]]) -> Deferred[None]:
    """A callback that runs ``step`` once what came before is done, whatever it gave."""
    return step()


def _say_retries(
    policy: Callable[[int], float], where: str, failed: Callable[[str], None]
) -> Callable[[int], float]:
    """The backoff policy, saying each wait: an unreachable mirrord must not be silent."""

    def retry(attempt: int) -> float:
        delay = policy(attempt)
        log.warn(
            "no connection to mirrord at {where} (attempt {attempt}); retrying in {delay:.1f}s",
            where=where,
            attempt=attempt,
            delay=delay,
        )
        failed(f"no connection to mirrord at {where}")
        return delay

    return retry


def _cannot_listen(e: CannotListenError) -> str:
    """What to do when metrics.port cannot be bound."""
    reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
    return (
        f"cannot listen on {e.interface}:{e.port} for metrics ({reason}):"
        " choose another port with -o metrics.port=N or an address of this host"
        " with -o metrics.bind=ADDR"
    )


def _endpoint(config: Any, reactor: Any) -> Any:
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    host, port = config["host"], int(config["port"])
    endpoint: Any = HostnameEndpoint(reactor, host, port)  # an IStreamClientEndpoint
    if not config["tls"]:
        return endpoint
    try:
        ssl = twisted_ssl("tls")
        trust = None
        if config["tls.ca"]:
            with open(config["tls.ca"], "rb") as f:
                trust = ssl.trustRootFromCertificates(
                    [ssl.Certificate.loadPEM(pem) for pem in pem_blocks(f.read())]
                )
        options = ssl.optionsForClientTLS(host, trustRoot=trust)
    except OSError as e:
        raise config.error("tls.ca", f"cannot read {e.filename}: {e.strerror}") from None
    return wrapClientTLS(options, endpoint)


def pem_blocks(data: bytes) -> list[bytes]:
    """Each certificate of a PEM bundle (``tls.ca`` may hold several CAs)."""
    end = b"-----END CERTIFICATE-----"
    return [
        block[block.index(b"-----BEGIN CERTIFICATE-----") :] + end
        for block in data.split(end)
        if b"-----BEGIN CERTIFICATE-----" in block
    ]


class FsMirrorService(MultiService):
    """The whole client; ``exit_code``/``failure`` say how it ended."""

    def __init__(
        self, config: Any, *, reactor: Any, verbose: int = 0, out: IO[str] | None = None
    ) -> None:
        super().__init__()
        self.config, self.reactor = config, reactor
        self.failure: str | None = None
        if config["rotate.backdir"]:
            try:
                check_backdir(config["datadir"], config["rotate.backdir"])
            except RotateError as e:
                raise config.error("rotate.backdir", str(e)) from None
        self.state = State(config["datadir"])
        try:
            self.state.acquire()
            self.state.load()
        except StateLocked as e:
            raise CommandError(f"{e}; stop it first or use another --datadir") from None
        except StateCorrupt as e:
            self.state.release()
            raise CommandError(
                f"{e} in {os.fsdecode(self.state.sn_path)}; remove it to force a full resync"
            ) from None
        except OSError as e:
            self.state.release()
            where = os.fsdecode(e.filename) if e.filename else os.fsdecode(self.state.datadir)
            raise CommandError(
                f"cannot use datadir {os.fsdecode(self.state.datadir)}: {where}: {e.strerror};"
                " make it a directory writable by the user fs_mirror runs as,"
                " or choose another --datadir"
            ) from None
        self.fetcher: Any = None
        self.reporter: Reporter | None = None
        self.closers: list[Callable[[], Deferred]] = []  # run after the client stopped
        try:
            endpoint = _endpoint(config, reactor)
            self.client = self._build(verbose, out or sys.stdout)
        except BaseException:
            self.state.release()
            raise
        retry = _say_retries(
            backoffPolicy(initialDelay=0.5, factor=2.0, maxDelay=config["reconnect.max"]),
            f"{config['host']}:{config['port']}",
            self.client.health.failed,
        )
        factory: Any = self.client  # an IProtocolFactory (zope interfaces are opaque to mypy)
        ClientService(endpoint, factory, retryPolicy=retry, clock=reactor).setServiceParent(self)
        if config["rotate.at"] and config["rotate.backdir"]:
            DailyRotation(config["rotate.at"], self.rotate_now, reactor).setServiceParent(self)
        Watchdog(reactor).setServiceParent(self)
        health = self.client.health
        self.status_file = StatusFile(status_path(config["datadir"]), health.status, reactor)
        health.changed = self.status_file.changed
        if config["metrics.port"]:
            MetricsService(
                config["metrics.port"], config["metrics.bind"], lambda: metrics(health), reactor
            ).setServiceParent(self)

    def _build(self, verbose: int, out: IO[str]) -> MirrorClient:
        config = self.config
        secret = config.secret("auth.secret-from")
        if config["fssync.type"] == REPORT:
            sink: Any = report_sink(config, out, self.reactor, self.state.staging)
            self.reporter = sink.reporter
            self.closers.append(sink.close)  # the baseline, once the reporter is done
        else:
            password = config.secret("fssync.password-from")
            staging, tmpdir = scratch_dirs(self.state.staging)
            try:
                spec = backend_spec(config, password, rsync_staging=staging, tmpdir=tmpdir)
                assert spec is not None  # report mode is handled above
                self.fetcher = make_fetcher(spec, self.reactor)
            except ValueError as e:
                raise CommandError(str(e)) from None
            sink = Applier(
                config["datadir"],
                self.fetcher,
                as_root=os.geteuid() == 0,
                log=log,
                verbose=verbose > 0,
                tmpdir=tmpdir,
                owed=Owed(os.path.join(self.state.staging, OWED_NAME)),
            )
        return MirrorClient(
            state=self.state,
            sink=sink,
            reactor=self.reactor,
            secret=secret,
            chunk=NEXT_CHUNK,
            init_chunk=INIT_CHUNK,
            gate=FileGate(BatchLock(config["datadir"]), self.reactor, log),
            on_fatal=self.fatal,
            log=log,
            progress=self._progress(sink),
            max_delete=config["init.max-delete"],
        )

    def _progress(self, sink: Any) -> InitProgress:
        """INIT progress: redrawn on a terminal (not in report mode, which prints there),
        else a log line; and ``STATUS=`` for systemd, every ``progress.interval``."""
        every = self.config["progress.interval"]
        parts: list[InitProgress] = [SaidProgress(_status, self.reactor, every)]
        if not sys.stderr.isatty():
            parts.append(SaidProgress(_log_progress, self.reactor, every))
        elif sink.mirrors:
            parts.append(InitProgress(sys.stderr, self.reactor))
        return Progresses(parts)

    def rotate_now(self, today: datetime.date) -> Deferred:
        """Rotate in a thread while batches wait on the shared gate."""
        config = self.config
        host = config["rotate.host"] or config["host"]

        def job() -> Deferred:
            return self.client.run_blocking(
                rotate,
                config["datadir"],
                config["rotate.backdir"],
                host,
                today,
                config["rotate.keep"],
            )

        d = self.client.gate.run(job)
        d.addCallbacks(
            lambda made: log.info("rotated the mirror into {dir}", dir=os.fsdecode(made)),
            lambda f: log.error("rotation failed: {why}", why=f.getErrorMessage()),
        )
        return d

    def fatal(self, message: str) -> None:
        """Stop for good with exit status 1 (bad secret and the like)."""
        if self.failure is None:
            self.failure = message
            log.error("{message}", message=message)
            self.reactor.callLater(0, self.reactor.stop)

    @property
    def exit_code(self) -> int:
        return 0 if self.failure is None else 1

    def startService(self) -> None:
        """Start the children; a metrics port that cannot listen stops fs_mirror (exit 1)."""
        self.status_file.changed()  # --status finds this run from its first moment
        try:
            super().startService()
        except CannotListenError as e:
            self.fatal(_cannot_listen(e))

    def stopService(self) -> Deferred:
        """Finish the batch in hand and save its serial, then close everything."""
        tell(b"STOPPING=1", log)
        d = self.client.stop()
        d.addCallback(lambda _: super(FsMirrorService, self).stopService())
        closers = [x.close for x in (self.fetcher, self.reporter) if x is not None]
        for close in closers + self.closers:
            d.addCallback(_then, close)

        def release(result: object) -> object:
            self.status_file.final(self.client.health.status(running=False))
            self.state.release()
            return result

        return d.addBoth(release)
