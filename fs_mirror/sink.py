"""Where a batch of records goes: the mirror (``Applier``) or a report.

The client only needs ``apply_batch`` and the counters; report mode's sink
changes nothing of the mirror: it prints each change and keeps the baseline
(``fs_mirror.baseline``) that a later full sync is compared with.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from twisted.internet.defer import Deferred, succeed

from cmdconfig import CommandError, Config
from fs_mirror.backend import backend_spec, scratch_dirs
from fs_mirror.baseline import Baseline, BaselineError, Entry
from fs_mirror.hashing import ContentHasher
from fs_mirror.nodes import Stats
from fs_mirror.report import Found, Reporter, meta_fields, text_path
from fs_mirror.syslog_out import SyslogUnreachable
from fs_sync.registry import make_fetcher
from protocol.records import Action, Record


class Sink(Protocol):
    """Where records go: an ``Applier`` (mirror) or a reporter (report mode)."""

    mirrors: bool  # True when records change the tree under the datadir
    stats: Stats  # running counters

    def apply_batch(
        self,
        records: list[Record],
        serial: int | None = None,
        *,
        init: bool = False,
        replayed: int = 0,
        progress: Callable[[int], None] | None = None,
        first: int | None = None,
    ) -> Deferred: ...

    def checkpoint(self) -> None:
        """Make what the next saved serial relies on durable (called just before it)."""

    def needs_resync(self) -> bool:
        """True when only a full INIT can bring the mirror in step again."""

    def resynced(self) -> None:
        """A full INIT begins: it names everything again."""

    def finish_init(self) -> Deferred[None]:
        """A full INIT has all been applied (before its serial is saved)."""


BASELINE_NAME = b"report-baseline"  # the baseline's BDB home, in the staging directory


def report_sink(config: Config, out: IO[str], reactor: Any, staging: bytes) -> ReportSink:
    """Report mode's sink from the ``report.*`` keys; ConfigError naming the key at fault."""
    argv = shlex.split(config["report.exec"]) if config["report.exec"] else None
    try:
        reporter = Reporter(
            out,
            config["report.format"],
            config["report.syslog"],
            argv,
            reactor,
            syslog_socket=config["report.syslog.socket"],
        )
    except ValueError as e:
        raise config.error("report.exec", str(e)) from None
    except SyslogUnreachable as e:
        raise config.error(
            "report.syslog",
            f"{e}: a tripwire must not run without its alerts; start syslog, point"
            " report.syslog.socket at its socket, or set report.syslog=no",
        ) from None
    try:
        baseline = Baseline(os.path.join(staging, BASELINE_NAME))
    except BaselineError as e:
        raise CommandError(str(e)) from None
    return ReportSink(reporter, baseline, reactor, _hasher(config, reactor, staging))


def _hasher(config: Config, reactor: Any, staging: bytes) -> ContentHasher | None:
    """The content hasher ``report.hash`` asks for, fetching through ``report.fetch``."""
    if config["report.hash"] == "none":
        return None
    rsync, tmpdir = scratch_dirs(staging)
    password = config.secret("fssync.password-from")
    kind = config["report.fetch"]
    try:
        spec = backend_spec(config, password, rsync_staging=rsync, tmpdir=tmpdir, kind=kind)
    except ValueError as e:
        raise config.error("report.fetch", str(e)) from None
    assert spec is not None  # report.fetch is never "report"
    workdir = os.path.join(tmpdir, b"hash")
    os.makedirs(workdir, mode=0o700)
    return ContentHasher(make_fetcher(spec, reactor), workdir, reactor)


class ReportSink:
    """Report mode: print each change, keep the baseline, compare a full sync with it.

    The first full sync is recorded as the baseline and summed up in one
    line; each later record is printed with its own serial and followed into
    the baseline; a later full sync (a new session once mirrord lost its
    database) prints only what differs from the baseline, which then becomes
    the tree that sync named.
    """

    mirrors = False

    def __init__(
        self,
        reporter: Reporter,
        baseline: Baseline,
        reactor: Any,
        hasher: ContentHasher | None = None,
    ) -> None:
        self.reporter = reporter
        self.baseline = baseline
        self.reactor = reactor
        self.hasher = hasher
        self.stats = Stats()
        self._full: _FullSync | None = None  # the full sync being received

    def apply_batch(
        self,
        records: list[Record],
        serial: int | None = None,
        *,
        init: bool = False,
        replayed: int = 0,
        progress: Callable[[int], None] | None = None,
        first: int | None = None,
    ) -> Deferred[Stats]:
        if not init:
            self._full = None  # a full sync cut short: the baseline stays as it was
            records = records[replayed:]  # what a killed run reported is not reported again
            if first is not None:
                first += replayed

        def take(digests: list[str | None]) -> Stats:
            if init:
                self._add_full(records, serial, digests)
            else:
                self._follow(records, serial, first, digests)
            return self.stats

        if self.hasher is None:
            return succeed(take([]))
        files = [i for i, r in enumerate(records) if r.action is Action.FWRITE]
        d = self.hasher.digests([records[i].path for i in files])

        def aligned(found: list[str | None]) -> list[str | None]:
            digests: list[str | None] = [None] * len(records)
            for i, digest in zip(files, found, strict=True):
                digests[i] = digest
            return digests

        return d.addCallback(aligned).addCallback(take)

    def _follow(
        self,
        records: list[Record],
        serial: int | None,
        first: int | None,
        digests: list[str | None],
    ) -> None:
        for i, record in enumerate(records):
            self.stats.records += 1
            digest = digests[i] if digests else None
            was = None
            if digest is not None:
                old = self.baseline.get(record.path)
                if old is not None and old.digest is not None and old.digest != digest:
                    was = {"sha256": old.digest}
            number = serial if first is None else first + i
            self.reporter.report(record, number, was=was, digest=digest)
        self.baseline.follow(records, digests)

    def _add_full(
        self, records: list[Record], serial: int | None, digests: list[str | None]
    ) -> None:
        full = self._full
        if full is None:  # resynced() was not called: begin here
            self.resynced()
            full = self._full
            assert full is not None
        full.serial = serial
        full.entries += len(records)
        self.stats.records += len(records)
        for record, old, new in self.baseline.add_full(records, digests):
            found = Found.CREATED if old is None else Found.CHANGED
            if old is None:
                full.created += 1
            else:
                full.changed += 1
            was = None if old is None else differences(old, new)
            self.reporter.report(record, serial, found=found, was=was, digest=new.digest)

    def finish_init(self) -> Deferred[None]:
        """The full sync has all arrived: report what it did not name, then swap it in.

        The baseline is walked a chunk per reactor turn, so a tree of millions
        neither blocks the reactor nor sits in memory.
        """
        full, self._full = self._full, None
        if full is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        known = self.baseline.exists

        def step(after: bytes | None) -> None:
            try:
                if known:
                    gone, after = self.baseline.unseen(after)
                    for path, entry in gone:
                        self._gone(full, path, entry)
                if not known or after is None:
                    self.baseline.swap()
                    self._summary(full, known)
                    done.callback(None)
                    return
            except Exception:
                done.errback()
                return
            self.reactor.callLater(0, step, after)

        step(None)
        return done

    def _gone(self, full: _FullSync, path: bytes, entry: Entry) -> None:
        """One entry the full sync did not name; below a gone directory, only counted."""
        full.deleted += 1
        if full.gone_dir is not None and path.startswith(full.gone_dir + b"/"):
            return
        full.gone_dir = path if entry.action is Action.CREATE else None
        self.reporter.report(Record(Action.DELETE, path), full.serial, found=Found.DELETED)

    def _summary(self, full: _FullSync, compared: bool) -> None:
        at = "" if full.serial is None else f" at serial {full.serial}"
        if not compared:
            self.reporter.summary(
                "baseline",
                f"{full.entries} entries recorded{at}; later changes are reported",
                entries=full.entries,
                serial=full.serial or 0,
            )
            return
        self.reporter.summary(
            "full-sync",
            f"{full.entries} entries compared with the baseline{at}: {full.created} created,"
            f" {full.deleted} deleted, {full.changed} changed; the baseline is now this sync",
            entries=full.entries,
            serial=full.serial or 0,
            created=full.created,
            deleted=full.deleted,
            changed=full.changed,
        )

    def checkpoint(self) -> None:
        self.baseline.flush()  # the baseline is on disk before the serial it matches

    def needs_resync(self) -> bool:
        return False

    def resynced(self) -> None:
        self.baseline.begin_full()
        self._full = _FullSync()

    def close(self) -> Deferred[None]:
        """Close the baseline and the hasher's backend (fs_mirror closes the reporter)."""
        self.baseline.close()
        return succeed(None) if self.hasher is None else self.hasher.close()


@dataclass
class _FullSync:
    """The counts of one full sync as it arrives."""

    serial: int | None = None
    entries: int = 0
    created: int = 0
    changed: int = 0
    deleted: int = 0
    gone_dir: bytes | None = None  # the last directory reported deleted


def differences(old: Entry, new: Entry) -> dict[str, str]:
    """The baseline's fields where they differ from the full sync's (``was.*`` in a report)."""
    was: dict[str, str] = {}
    if old.action is not new.action:
        was["action"] = old.action.value
    if old.target != new.target and old.target is not None:
        was["target"] = text_path(old.target)
    before, after = meta_fields(old.meta), meta_fields(new.meta)
    for key, value in before.items():
        if after.get(key) != value and not (key == "mtime" and new.action is Action.CREATE):
            was[key] = value
    if old.digest is not None and new.digest is not None and old.digest != new.digest:
        was["sha256"] = old.digest
    return was
