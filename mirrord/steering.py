"""What ``mirrord -k`` steers: the identities served, changed at run time, and the status.

``LiveIdentity`` is the one object the monitor, the journal and the FTP
service consult, so an include or exclude takes effect in all of them at
once.  ``Steering`` is the control channel's handler (``control.Handler``):
it writes the identity's list files first, then tells the journal and the
monitor, so a restart right after sees what the reply said.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from fs_info import store as identity_store
from fs_info.identity import Identity, IdentitySet, normalize
from mirrord.values import Change, DropTree
from protocol.paths import is_under
from protocol.records import Action, Record

__all__ = ["LiveIdentity", "StartupError", "Steering", "load_identities"]


class StartupError(Exception):
    """A problem the operator must fix before mirrord can run (exit status 1)."""


class LiveIdentity:
    """The identities mirrord serves, replaceable at run time by ``-k include/exclude``."""

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


def load_identities(datadir: bytes, names: list[str]) -> LiveIdentity:
    """The identities ``names`` from their list files; StartupError when nothing is included."""
    identity = LiveIdentity(names, [identity_store.load(datadir, name) for name in names])
    if not identity.roots():
        raise StartupError(
            f"no include roots in identities {','.join(names)} under "
            f"{os.fsdecode(datadir)}: add one with "
            f"`fs_info -o datadir={os.fsdecode(datadir)} -a t:/PATH "
            f"{names[0]}`"
        )
    return identity


def _checked_path(path: bytes) -> bytes:
    """A control-channel path, refused unless absolute and already normalised."""
    if normalize(path) != path:
        raise ValueError(
            f"{os.fsdecode(path)} is not a normalised absolute path "
            f"(use {os.fsdecode(normalize(path))})"
        )
    return path


class Parts(Protocol):
    """The running parts Steering reads and tells (the journal service has them)."""

    @property
    def store(self) -> Any: ...
    @property
    def journal(self) -> Any: ...
    @property
    def monitor(self) -> Any: ...


class Clients(Protocol):
    def clients(self) -> list[dict[str, Any]]: ...


class Steering:
    """Answers ``-k status``, ``-k include PATH`` and ``-k exclude PATH``."""

    def __init__(
        self, datadir: bytes, identity: LiveIdentity, parts: Parts, clients: Clients
    ) -> None:
        self.datadir, self.identity = datadir, identity
        self.parts, self.port = parts, clients

    def status(self) -> dict[str, Any]:
        store, journal = self.parts.store, self.parts.journal
        mon = self.parts.monitor.status()
        return {
            "session": store.session,
            "head": store.head,
            "oldest": store.oldest,
            "watched": mon.get("watched", 0),
            "watches": mon.get("watched", 0),  # the contract's name (section 6)
            "polled": mon.get("polled", 0),
            "unreadable": len(journal.unreadable),
            "overflows": mon.get("overflows", 0),
            "roots": [os.fsdecode(r) for r in self.identity.roots()],
            "clients": self.port.clients(),
        }

    def include(self, path: bytes) -> str:
        """Add an include root at run time: stream its tree as records, then watch it."""
        path = _checked_path(path)
        if not os.path.isdir(path):
            raise ValueError(f"cannot include {os.fsdecode(path)}: not an existing directory")
        name = self.identity.names[0]
        ident = identity_store.load(self.datadir, name)
        if path in ident.includes and path not in ident.excludes:
            return f"{os.fsdecode(path)} is already included in identity {name}"
        # including a path excluded earlier takes that exclusion back; an include
        # that already covers it stays the only one (a nested t: would outlive it)
        excludes = [x for x in ident.excludes if x != path]
        covered = path in ident.excludes and any(
            inc != path and is_under(path, inc) for inc in ident.includes
        )
        ident = Identity(list(ident.includes) if covered else {*ident.includes, path}, excludes)
        identity_store.save(self.datadir, name, ident)
        self.identity.replace(name, ident)
        self.parts.journal.rescan(path)
        return f"including {os.fsdecode(path)} in identity {name}"

    def reload(self) -> list[str]:
        """Re-read every identity's list files (SIGHUP): what ``fs_info`` changed takes
        effect as ``-k include`` / ``-k exclude`` would; one line per change, for the log."""
        said: list[str] = []
        for name, old in zip(self.identity.names, self.identity.identities, strict=True):
            new = identity_store.load(self.datadir, name)
            if set(new.includes) == set(old.includes) and set(new.excludes) == set(old.excludes):
                continue
            self.identity.replace(name, new)
            journal, monitor = self.parts.journal, self.parts.monitor
            gone = [p for p in old.includes if p not in new.includes]
            gone += [p for p in new.excludes if p not in old.excludes]
            for path in gone:  # no longer served: DELETE it, stop watching it
                monitor.unwatch_tree(path)
                if self.parts.store.get(path) is not None and path not in self.identity:
                    journal.add([Change(DropTree(path), Record(Action.DELETE, path))])
                said.append(f"{os.fsdecode(path)} no longer served ({name})")
            came = [p for p in new.includes if p not in old.includes]
            came += [p for p in old.excludes if p not in new.excludes]
            for path in came:  # served now: walk it, which sends and watches it
                journal.rescan(path)
                said.append(f"{os.fsdecode(path)} now served ({name})")
        return said

    def exclude(self, path: bytes) -> str:
        """Exclude a sub-tree of an include at run time: DELETE it and stop watching it."""
        path = _checked_path(path)
        name = self.identity.names[0]
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
        journal = self.parts.journal
        self.parts.monitor.unwatch_tree(path)
        if self.parts.store.get(path) is not None:
            journal.add([Change(DropTree(path), Record(Action.DELETE, path))])
        for inc in ident.includes:  # an include nested below takes its part back
            if inc != path and is_under(inc, path):
                journal.rescan(inc)
        return f"excluding {os.fsdecode(path)} from identity {name}"
