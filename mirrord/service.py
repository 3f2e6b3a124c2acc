"""mirrord's service tree: config -> store, watcher, journal, listeners -> ready line.

Built the way magic-wormhole's mailbox server builds its own: ``makeService``
only wires, adding one child service per part in the order they start, and
``MultiService`` stops them in the reverse order.  The order is the point:

1. ``store``: open the Berkeley DB environment (recovery runs here after a
   crash);
2. ``watcher``: open inotify and check the kernel limits;
3. ``journal``: the one writer of the store, fed by the watcher's monitor;
   its boot scan (watch-before-list walk of every include root) loads the
   snapshot on a new database and logs the differences on an existing one;
4. ``after-boot``, whose children start only once that scan is done, so no
   client ever sees a half-built snapshot: the protocol port, the control
   socket, the FTP service, the metrics port, and the poll and verification
   timers; then the readiness hook prints the line the contract fixes and
   tells systemd.

Stopping reverses it: no more clients and timers, the journal commits its
queue and ends its walks, inotify closes, the store closes last.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from cmdconfig import Config, ConfigError
from cmdconfig.metrics import listen_metrics
from cmdconfig.notify import Watchdog, tell
from cmdconfig.prometheus import Metric
from mirrord import lines
from mirrord.control import ControlFactory, listen_control
from mirrord.drain import InotifyDrain
from mirrord.journal import Journal
from mirrord.kernel import Inotify, InotifyReader, check_limits, read_limits
from mirrord.listeners import Listener, ProtocolPort
from mirrord.metrics import metrics
from mirrord.monitor import Monitor
from mirrord.reload import plan
from mirrord.steering import LiveIdentity, StartupError, Steering, load_identities
from mirrord.store import Store

__all__ = ["MirrordService", "StartupError", "makeService"]

log = Logger(namespace="mirrord")


class StoreService(Service):
    """The Berkeley DB environment under ``DATADIR/db``, open while running."""

    def __init__(self, home: str, cache_bytes: int, loglen: int) -> None:
        self.setName("store")
        self.home, self.cache_bytes, self.loglen = home, cache_bytes, loglen
        self.store: Store | None = None
        self.opened_head = 0  # the head when opened: records logged since are this run's

    def startService(self) -> None:  # noqa: N802
        store = self.store = Store(self.home, cache_bytes=self.cache_bytes, loglen=self.loglen)
        self.opened_head = store.head
        log.info(
            "database {home}: session {session}, serials {oldest}..{head}{new}",
            home=self.home,
            session=store.session,
            oldest=store.oldest,
            head=store.head,
            new=" (new)" if store.created else "",
        )
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.store is not None:
            self.store.close()


class WatcherService(Service):
    """inotify: the descriptor, the monitor turning its events into sink calls, the reader."""

    def __init__(
        self, identity: LiveIdentity, reactor: Any, max_watches: int | None, move_wait: float
    ) -> None:
        self.setName("watcher")
        self.identity, self.reactor = identity, reactor
        self.max_watches, self.move_wait = max_watches, move_wait
        self.inotify: Inotify | None = None
        self.monitor: Monitor | None = None
        self.reader: InotifyReader | None = None
        self.drain: InotifyDrain | None = None

    def startService(self) -> None:  # noqa: N802
        self.inotify = Inotify(max_watches=self.max_watches)
        for warning in check_limits(read_limits(), needed_watches=0):
            log.warn("{warning}", warning=warning)
        super().startService()

    def follow(self, sink: Any) -> Monitor:
        """Hand the kernel's events to ``sink`` (the journal) from now on."""
        assert self.inotify is not None, "the watcher starts before the journal"
        identity = self.identity
        self.monitor = Monitor(
            self.inotify,
            identity.__contains__,
            sink,
            self.reactor,
            move_wait=self.move_wait,
            log=log,
            has_excluded_below=identity.has_excluded_below,
        )
        self.reader = InotifyReader(self.inotify, self.monitor.handle, self.reactor, log=log)
        if IReactorThreads.providedBy(self.reactor):  # a thread empties the kernel's queue
            self.drain = InotifyDrain(self.inotify, self.reader, self.reactor, log=log)
            self.drain.startReading()
        else:  # a test's reactor with no threads: the reactor reads between turns
            self.reader.startReading()
        return self.monitor

    def watch(self, dir_path: bytes) -> bool:
        """Watch a directory (the journal's walks call this, watch before list)."""
        assert self.monitor is not None, "followed before the journal's first walk"
        return self.monitor.watch(dir_path)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.drain is not None:
            self.drain.stopReading()
        if self.reader is not None:
            self.reader.stopReading()
        if self.monitor is not None:
            self.monitor.stop()
        if self.inotify is not None:
            self.inotify.close()


class JournalService(Service):
    """The journal over the store, fed by the watcher; ``booted`` fires after the boot scan."""

    def __init__(
        self,
        stores: StoreService,
        watcher: WatcherService,
        reactor: Any,
        poll_interval: float,
        progress_every: float = 5.0,
    ) -> None:
        self.setName("journal")
        self.stores, self.watcher, self.reactor = stores, watcher, reactor
        self.poll_interval, self.progress_every = poll_interval, progress_every
        self.journal: Any = None
        self.booted: defer.Deferred[None] = defer.Deferred()

    @property
    def store(self) -> Any:
        return self.stores.store

    @property
    def monitor(self) -> Any:
        return self.watcher.monitor

    def startService(self) -> None:  # noqa: N802
        store, identity = self.store, self.watcher.identity
        # The journal calls the watcher's ``watch``, the watcher's monitor calls
        # the journal: the journal is made first, and the monitor follows it
        # before the boot walk (the first caller of ``watch``) runs.
        self.journal = Journal(
            store,
            identity,
            self.watcher.watch,
            self.reactor,
            log,
            progress_every=self.progress_every,
            status=_status,
        )
        self.watcher.follow(self.journal)
        super().startService()
        d = self.journal.boot(identity.roots(), first=store.created)
        d.addCallback(self._booted).chainDeferred(self.booted)

    def _booted(self, _: object) -> None:
        polled = self.monitor.status().get("polled")
        if polled and self.running:
            log.warn(
                "watch limit reached: {polled} sub-trees are polled every {interval}s; "
                "raise fs.inotify.max_user_watches to watch them all",
                polled=polled,
                interval=self.poll_interval,
            )

    def poll(self) -> defer.Deferred[Any]:
        """Rescan the polled sub-trees; the timer waits for the walks to end, so a
        poll slower than ``poll.interval`` never piles walks up on the same trees."""
        roots = self.monitor.polled_roots()
        return defer.gatherResults([self.journal.rescan(root) for root in roots])

    def verify(self) -> defer.Deferred[None]:
        """The verification rescan of every tree (``rescan.interval``)."""
        return self.journal.verify()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.journal is not None:
            self.journal.stop()  # commits its queue, ends its walks (the next boot rescans)


class Every(Service):
    """Calls ``func`` every ``interval`` seconds, the first time one interval after start."""

    def __init__(self, name: str, interval: float, func: Callable[[], Any], clock: Any) -> None:
        self.setName(name)
        self.interval, self.func, self.clock = interval, func, clock
        self.loop: task.LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.loop = task.LoopingCall(self.func)
        self.loop.clock = self.clock
        self.loop.start(self.interval, now=False)  # not at boot: the boot scan just ran

    def retime(self, interval: float) -> None:
        """A new interval (SIGHUP), counted from now; 0 stops it."""
        self.interval = interval
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.running and interval > 0:
            self.loop = task.LoopingCall(self.func)
            self.loop.clock = self.clock
            self.loop.start(interval, now=False)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.loop is not None and self.loop.running:
            self.loop.stop()


class AfterBoot(MultiService):
    """Starts its children, in order, once ``booted`` fires; then calls ``serving``.

    ``started`` fires when they are up (or at once when stopped during the
    boot scan: then none of them starts), and fails with whatever stopped
    the boot or a listener.
    """

    NAME = "after-boot"

    def __init__(self, booted: defer.Deferred[None], serving: Callable[[], None]) -> None:
        super().__init__()
        self.setName(self.NAME)
        self.booted, self.serving = booted, serving
        self.started: defer.Deferred[None] = defer.Deferred()
        self._up: list[Service] = []

    def startService(self) -> None:  # noqa: N802
        Service.startService(self)  # the children wait for the boot scan
        defer.ensureDeferred(self._start()).chainDeferred(self.started)

    async def _start(self) -> None:
        await self.booted
        for child in self:
            if not self.running:  # stopped during the boot scan: never listen
                return
            child.startService()
            self._up.append(child)
            if isinstance(child, Listener):
                await child.listening
        if self.running:
            self.serving()

    def stopService(self) -> defer.Deferred[Any]:  # noqa: N802
        Service.stopService(self)  # as MultiService's, for the children that started
        up, self._up = self._up, []
        return defer.DeferredList([defer.maybeDeferred(s.stopService) for s in reversed(up)])


class MirrordService(MultiService):
    """The tree ``makeService`` builds; ``ready`` fires once it serves, or fails with why not."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config  # the running configuration (SIGHUP replaces what it can)
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.steering: Steering | None = None  # set by makeService
        self.journal: JournalService | None = None
        self.port: ProtocolPort | None = None

    def reload(self) -> None:
        """SIGHUP: re-read the identities: what ``fs_info`` changed is served now."""
        if self.steering is None or not self.running:
            return
        changes = self.steering.reload()
        log.info(
            "SIGHUP: identities re-read, {what}",
            what="; ".join(changes) if changes else "no change",
        )

    def reconfigure(self, new: Config, relog: Callable[[Config], None]) -> None:
        """SIGHUP: take what can change live from ``new``, name what waits for a restart.

        ``relog`` sets logging up again from ``new`` (verbosity, ``log.file``,
        reopened either way); a ``ConfigError`` from it keeps the old logging.
        """
        changes = plan(self.config, new)
        live = list(changes.live)
        try:
            relog(new)
        except ConfigError as e:
            log.error("SIGHUP: {error}; logging as before", error=e)
            live = [k for k in live if not k.startswith("log.")]
        for key in changes.restart:
            log.warn(
                "SIGHUP: {key} changed in the configuration ({origin}); it takes effect"
                " at the next restart",
                key=key,
                origin=new.origin(key),
            )
        for key in self._apply_live(live, new):
            log.warn("SIGHUP: {key} cannot be turned on while running; restart mirrord", key=key)
        applied = {k: new[k] for k in live}
        self.config = _merged(self.config, new, live)
        log.info(
            "SIGHUP: configuration re-read, {what}",
            what=", ".join(f"{k} = {v}" for k, v in applied.items()) or "nothing to apply",
        )

    def _apply_live(self, keys: list[str], new: Config) -> list[str]:
        """Set ``keys`` on the running parts; the keys that could not be."""
        factory = self.port.factory if self.port is not None else None
        journal = self.journal
        attrs = {"max-clients": "max_clients", "timeout": "timeout", "batch": "batch"}
        refused: list[str] = []
        for key in keys:
            if key in attrs and factory is not None:
                setattr(factory, attrs[key], new[key])
            elif key == "progress.interval":
                if factory is not None:
                    factory.progress_every = new[key]
                if journal is not None and journal.journal is not None:
                    journal.journal.walker.progress_every = new[key]
            elif key in ("poll.interval", "rescan.interval"):
                timer = self._timer(key)
                if timer is None and new[key] > 0:
                    refused.append(key)
                elif timer is not None:
                    timer.retime(new[key])
                if key == "poll.interval" and journal is not None:
                    journal.poll_interval = new[key]
        return refused

    def _timer(self, key: str) -> Every | None:
        after = self.getServiceNamed(AfterBoot.NAME)
        try:
            timer = after.getServiceNamed(key)
        except KeyError:
            return None
        return timer if isinstance(timer, Every) else None

    def startService(self) -> None:  # noqa: N802
        try:
            super().startService()
        except Exception:
            self.ready.errback()
            return
        after = self.getServiceNamed(AfterBoot.NAME)
        assert isinstance(after, AfterBoot)
        after.started.chainDeferred(self.ready)

    def stopService(self) -> defer.Deferred[Any]:  # noqa: N802
        """Tell systemd a clean stop has begun (STOPPING=1), then stop in reverse order."""
        tell(b"STOPPING=1", log)
        return super().stopService()


def _serving(parts: JournalService) -> Callable[[], None]:
    """The readiness hook: the line scripts wait for, and READY=1 when systemd asks."""

    def hook() -> None:
        watched, head = parts.monitor.status().get("watched", 0), parts.store.head
        log.info(
            lines.BOOT_FINISHED + " : {watched} directories watched, head serial {head}",
            watched=watched,
            head=head,
        )
        tell(b"READY=1", log)
        _status(f"serving: {watched} directories watched, head serial {head}")

    return hook


def _status(text: str) -> None:
    """Progress for systemd (``systemctl status``): a ``STATUS=`` line."""
    tell(b"STATUS=" + text.encode(errors="backslashreplace"), log)


def _merged(config: Config, new: Config, keys: list[str]) -> Config:
    """``config`` with ``new``'s values of ``keys`` (those SIGHUP applied), and their origins."""
    if not keys:
        return config
    values = {**config, **{k: new[k] for k in keys}}
    origins = {k: config.origin(k) for k in config}
    origins.update({k: new.origin(k) for k in keys})
    return Config(values, origins, new.path)


def makeService(config: Config, reactor: Any) -> MirrordService:  # noqa: N802 (Twisted's name)
    """The service tree for ``config`` (identities are read now: a bad one fails here)."""
    datadir = os.fsencode(config["datadir"])
    identity = load_identities(datadir, list(config["identities"]))
    top = MirrordService(config)
    Watchdog(reactor).setServiceParent(top)  # pings from the start: a long boot is alive
    home = os.path.join(config["datadir"], "db")
    stores = StoreService(home, config["cache.size"] << 20, config["loglen"])
    watcher = WatcherService(identity, reactor, config["watch.max"] or None, config["move.wait"])
    journal = JournalService(
        stores, watcher, reactor, config["poll.interval"], config["progress.interval"]
    )
    top.journal = journal
    for part in (stores, watcher, journal):
        part.setServiceParent(top)

    after = AfterBoot(journal.booted, _serving(journal))
    port = ProtocolPort(config, journal, reactor)
    port.status = _status
    top.port = port
    port.setServiceParent(after)
    steering = top.steering = Steering(datadir, identity, journal, port)
    control = ControlFactory(steering)
    sock = config["control.socket"] or os.path.join(config["datadir"], "mirrord.sock")
    Listener("control", lambda: listen_control(control, reactor, sock)).setServiceParent(after)
    if config["ftp.port"]:
        Listener(
            "ftp",
            lambda: reactor.listenTCP(
                config["ftp.port"], _ftp_factory(config, identity), interface=config["ftp.bind"]
            ),
            "read-only FTP on {bind}:{port}",
            bind=config["ftp.bind"],
            port=config["ftp.port"],
        ).setServiceParent(after)
    if config["metrics.port"]:
        _metrics_listener(config, reactor, steering, stores).setServiceParent(after)
    for key, func in (("poll.interval", journal.poll), ("rescan.interval", journal.verify)):
        if config[key] > 0:
            Every(key, config[key], func, reactor).setServiceParent(after)
    after.setServiceParent(top)
    return top


def _metrics_listener(
    config: Config, reactor: Any, steering: Steering, stores: StoreService
) -> Listener:
    """``/metrics`` on metrics.bind:metrics.port, read off the ``-k status`` reply."""

    def collect() -> list[Metric]:
        status = steering.status()
        return metrics(status, status["head"] - stores.opened_head)

    return Listener(
        "metrics",
        lambda: listen_metrics(reactor, config["metrics.port"], config["metrics.bind"], collect),
        "metrics on http://{bind}:{port}/metrics",
        bind=config["metrics.bind"],
        port=config["metrics.port"],
    )


def _ftp_factory(config: Config, identity: LiveIdentity) -> Any:
    from mirrord.ftpserver import make_ftp_factory  # imports the global reactor

    return make_ftp_factory(
        identity.__contains__, config["ftp.user"], config.secret("ftp.password-from")
    )
