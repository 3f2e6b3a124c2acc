"""mirrord's service tree: config -> store, watcher, journal, listeners -> ready line.

Wiring only: every piece of domain logic lives in its own module.  Start-up
order matters and is the point of this module:

1. open the store (Berkeley DB; recovery runs here after a crash),
2. open inotify and check the kernel limits against the tree,
3. boot scan: watch-before-list walk of every include root; on a new
   database it loads the snapshot, on an existing one it logs the
   differences as records (smooth boot),
4. only then listen (protocol, control socket, optional FTP), and print the
   readiness line, so no client ever sees a half-built snapshot.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.logger import Logger

from fs_info import store as identity_store
from fs_info.identity import Identity, IdentitySet, normalize
from mirrord import lines
from mirrord.control import ControlFactory, listen_control
from mirrord.journal import Journal
from mirrord.kernel import Inotify, InotifyReader, check_limits, read_limits
from mirrord.monitor import Monitor
from mirrord.server import MirrorServerFactory, listen
from mirrord.store import Store
from mirrord.values import Change, DropTree
from protocol.paths import is_under
from protocol.records import Action, Record

log = Logger(namespace="mirrord")


class StartupError(Exception):
    """A problem the operator must fix before mirrord can run (exit status 1)."""


def _checked_path(path: bytes) -> bytes:
    """A control-channel path, refused unless absolute and already normalised."""
    if normalize(path) != path:
        raise ValueError(
            f"{os.fsdecode(path)} is not a normalised absolute path "
            f"(use {os.fsdecode(normalize(path))})"
        )
    return path


class LiveIdentity:
    """The identities mirrord serves, replaceable at run time by ``-k include/exclude``.

    The monitor, journal and FTP service hold this object, so a change is seen
    by all of them at once.
    """

    def __init__(self, names: list[str], members: list[Identity]) -> None:
        self.names = names
        self.current = IdentitySet(members)

    @property
    def identities(self) -> tuple[Identity, ...]:
        return self.current.identities

    def __contains__(self, path: object) -> bool:
        return path in self.current

    def roots(self) -> list[bytes]:
        return self.current.roots()

    def has_excluded_below(self, path: bytes) -> bool:
        """Is some exclude strictly inside ``path``? (Then a rename must rescan.)"""
        return any(x != path and is_under(x, path) for i in self.identities for x in i.excludes)

    def replace(self, name: str, identity: Identity) -> None:
        members = list(self.identities)
        members[self.names.index(name)] = identity
        self.current = IdentitySet(members)


class _LateSink:
    """The monitor's sink, bound to the journal once both exist."""

    def __init__(self) -> None:
        self.target: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class MirrordService(MultiService):
    """Everything mirrord runs, started in the order the module docstring gives."""

    def __init__(self, config: Any, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.datadir = os.fsencode(config["datadir"])
        self.names = list(config["identities"])
        self.ports: list[Any] = []
        self.store: Store | None = None
        self.inotify: Inotify | None = None
        self.identity: LiveIdentity | None = None
        self.ready = defer.Deferred()
        self._stopping = False

    # -- start-up -----------------------------------------------------------

    def load_identities(self) -> LiveIdentity:
        members = [identity_store.load(self.datadir, name) for name in self.names]
        identity = LiveIdentity(self.names, members)
        if not identity.roots():
            raise StartupError(
                f"no include roots in identities {','.join(self.names)} under "
                f"{os.fsdecode(self.datadir)}: add one with "
                f"`fs_info -o datadir={os.fsdecode(self.datadir)} -a t:/PATH "
                f"{self.names[0]}`"
            )
        return identity

    def startService(self) -> None:  # noqa: N802
        super().startService()
        d = defer.ensureDeferred(self._start())
        d.addCallbacks(self.ready.callback, self.ready.errback)

    async def _start(self) -> None:
        cfg = self.config
        self.identity = self.load_identities()
        home = os.path.join(os.fsdecode(self.datadir), "db")
        self.store = Store(home, cache_bytes=cfg["cache.size"] << 20, loglen=cfg["loglen"])
        log.info(
            "database {home}: session {session}, serials {oldest}..{head}{new}",
            home=home,
            session=self.store.session,
            oldest=self.store.oldest,
            head=self.store.head,
            new=" (new)" if self.store.created else "",
        )
        self.inotify = Inotify(max_watches=cfg["watch.max"] or None)
        for warning in check_limits(read_limits(), needed_watches=0):
            log.warn("{warning}", warning=warning)
        sink = _LateSink()
        self.monitor = Monitor(
            self.inotify,
            self.identity.__contains__,
            sink,
            self.reactor,
            move_wait=cfg["move.wait"],
            log=log,
            has_excluded_below=self.identity.has_excluded_below,
        )
        self.journal = Journal(self.store, self.identity, self.monitor.watch, self.reactor, log)
        sink.target = self.journal
        self.reader = InotifyReader(self.inotify, self.monitor.handle, self.reactor, log=log)
        self.reader.startReading()
        await self.journal.boot(self.identity.roots(), first=self.store.created)
        if self._stopping:  # stopped during the boot scan: never listen
            return
        status = self.monitor.status()
        if status.get("polled"):
            log.warn(
                "watch limit reached: {polled} sub-trees are polled every {interval}s; "
                "raise fs.inotify.max_user_watches to watch them all",
                polled=status["polled"],
                interval=cfg["poll.interval"],
            )
        self._start_polling()
        await self._listen()
        log.info(
            lines.BOOT_FINISHED + " : {watched} directories watched, head serial {head}",
            watched=status.get("watched", 0),
            head=self.store.head,
        )

    def _start_polling(self) -> None:
        self.loops: list[task.LoopingCall] = []
        for key, func in (("poll.interval", self._poll), ("rescan.interval", self._verify)):
            interval = self.config[key]
            if interval > 0:
                loop = task.LoopingCall(func)
                loop.clock = self.reactor
                loop.start(interval, now=False)  # not at boot: the boot scan just ran
                self.loops.append(loop)

    def _verify(self) -> defer.Deferred[None]:
        return self.journal.verify()

    def _poll(self) -> defer.Deferred[Any]:
        """Rescan the polled sub-trees; the LoopingCall waits for the walks to end, so
        a poll slower than ``poll.interval`` never piles walks up on the same trees."""
        roots = self.monitor.polled_roots()
        return defer.gatherResults([self.journal.rescan(root) for root in roots])

    async def _listen(self) -> None:
        cfg = self.config
        secret = cfg.secret("auth.secret-from") if hasattr(cfg, "secret") else None
        self.factory = MirrorServerFactory(
            self.store,
            self.journal,
            batch=cfg["batch"],
            timeout=cfg["timeout"],
            secret=secret,
            reactor=self.reactor,
        )
        port = await listen(
            self.factory,
            self.reactor,
            cfg["port"],
            cfg["bind"],
            tls_cert=cfg["tls.cert"] or None,
            tls_key=cfg["tls.key"] or None,
        )
        self.ports.append(port)
        log.info("serving on {bind}:{port}", bind=cfg["bind"], port=cfg["port"])
        sock = cfg["control.socket"] or os.path.join(os.fsdecode(self.datadir), "mirrord.sock")
        self.ports.append(listen_control(ControlFactory(self), self.reactor, sock))
        if cfg["ftp.port"]:
            from mirrord.ftpserver import make_ftp_factory

            ftp = make_ftp_factory(
                self.identity.__contains__, cfg["ftp.user"], cfg.secret("ftp.password-from")
            )
            self.ports.append(
                self.reactor.listenTCP(cfg["ftp.port"], ftp, interface=cfg["ftp.bind"])
            )
            log.info("read-only FTP on {bind}:{port}", bind=cfg["ftp.bind"], port=cfg["ftp.port"])

    # -- control channel (mirrord -k) ---------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        mon = self.monitor.status()
        return {
            "session": self.store.session,
            "head": self.store.head,
            "oldest": self.store.oldest,
            "watched": mon.get("watched", 0),
            "watches": mon.get("watched", 0),  # the contract's name (section 6)
            "polled": mon.get("polled", 0),
            "unreadable": len(self.journal.unreadable),
            "roots": [os.fsdecode(r) for r in self.identity.roots()],
            "clients": self.factory.clients(),
        }

    def include(self, path: bytes) -> str:
        """Add an include root at run time: stream its tree as records, then watch it."""
        path = _checked_path(path)
        if not os.path.isdir(path):
            raise ValueError(f"cannot include {os.fsdecode(path)}: not an existing directory")
        name = self.names[0]
        ident = identity_store.load(self.datadir, name)
        if path in ident.includes and path not in ident.excludes:
            return f"{os.fsdecode(path)} is already included in identity {name}"
        # including a path excluded earlier takes that exclusion back
        ident = Identity({*ident.includes, path}, [x for x in ident.excludes if x != path])
        identity_store.save(self.datadir, name, ident)
        self.identity.replace(name, ident)
        self.journal.rescan(path)
        return f"including {os.fsdecode(path)} in identity {name}"

    def exclude(self, path: bytes) -> str:
        """Exclude a sub-tree of an include at run time: DELETE it and stop watching it."""
        path = _checked_path(path)
        name = self.names[0]
        ident = identity_store.load(self.datadir, name)
        if not any(is_under(path, inc) for inc in ident.includes):
            raise ValueError(
                f"cannot exclude {os.fsdecode(path)}: it is not inside an include of "
                f"identity {name}"
            )
        if path in ident.excludes:
            return f"{os.fsdecode(path)} is already excluded from identity {name}"
        ident = Identity(list(ident.includes), [*ident.excludes, path])
        identity_store.save(self.datadir, name, ident)
        self.identity.replace(name, ident)
        self.monitor.unwatch_tree(path)
        if self.store.get(path) is not None:
            self.journal.add([Change(DropTree(path), Record(Action.DELETE, path))])
        for inc in ident.includes:  # an include nested below takes its part back
            if inc != path and is_under(inc, path):
                self.journal.rescan(inc)
        return f"excluding {os.fsdecode(path)} from identity {name}"

    # -- shutdown -----------------------------------------------------------

    def stopService(self) -> defer.Deferred:  # noqa: N802
        self._stopping = True
        ds = [defer.maybeDeferred(p.stopListening) for p in self.ports]
        d = defer.gatherResults(ds, consumeErrors=True)

        def close(_: object) -> None:
            for loop in getattr(self, "loops", []):
                if loop.running:
                    loop.stop()
            # in this order: no more clients nor events, then the journal commits its
            # queue and ends its walks, then what they use closes (a boot may have
            # stopped early, before some of these exist)
            for name, method in (
                ("factory", "stop"),
                ("reader", "stopReading"),
                ("monitor", "stop"),
                ("journal", "stop"),
            ):
                part = getattr(self, name, None)
                if part is not None:
                    getattr(part, method)()
            if self.inotify is not None:
                self.inotify.close()
            if self.store is not None:
                self.store.close()

        d.addBoth(close)
        d.addBoth(lambda _: MultiService.stopService(self))
        return d
