"""The `report` mode: print every change instead of applying it.

This is the realtime tripwire: one line per change, as text for a person or
JSON for a log pipeline, optionally to syslog (``fs_mirror.syslog_out``),
and optionally a hook command run per change.  What counts as a change (not
the baseline, only the differences of a later full sync) is
``fs_mirror.sink.ReportSink``'s to decide.  Hooks run with an argument
vector (never a shell) and the change in FSM_* environment variables; at
most `max_running` run at once and at most `max_queued` wait, so a burst of
changes cannot fork-bomb the host: past the cap a change is dropped from the
hook (still printed) with a warning.

It belongs to the client, not to fs_sync: it fetches nothing, it is where
``fs_mirror.sink.ReportSink`` sends records, and it prints them in the
wire's own forms (``protocol.paths.quote``, ``protocol.records.encode_mtime``)
so a report line never disagrees with the record it shows.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import IO, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from fs_mirror.syslog_out import DEFAULT_SOCKET, SyslogSocket
from protocol.paths import quote
from protocol.records import Meta, Record, encode_mtime

log = Logger()
#: What ``surrogateescape`` makes of a byte that is not part of valid UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")

_META_KEYS = ("mode", "uid", "gid", "size", "mtime")


class Found(StrEnum):
    """What a full sync found against the baseline (report lines of live changes have none)."""

    CREATED = "created"
    DELETED = "deleted"
    CHANGED = "changed"


def text_path(path: bytes) -> str:
    """Readable, reversible text for a path.

    The wire quoting (``protocol.paths.quote``: 0x00-0x1F, 0x7F and ``%`` as
    ``%XX``), and in addition every byte that is not part of valid UTF-8 as
    ``%XX``, so the result is always valid text (and valid JSON) and
    ``unquote`` gives the exact bytes back.
    """
    text = quote(path).decode("utf-8", "surrogateescape")
    return _UNDECODED.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", text)


def format_mtime(mtime_ns: int) -> str:
    """Seconds with up to 9 fraction digits, exactly as on the wire."""
    return encode_mtime(mtime_ns).decode("ascii")


def meta_fields(meta: Meta) -> dict[str, str]:
    """The metadata a record carries, as wire-style strings (absent keys left out)."""
    fields: dict[str, str] = {}
    if meta.mode is not None:
        fields["mode"] = f"{meta.mode:04o}"
    for key, value in (("uid", meta.uid), ("gid", meta.gid), ("size", meta.size)):
        if value is not None:
            fields[key] = str(value)
    if meta.mtime_ns is not None:
        fields["mtime"] = format_mtime(meta.mtime_ns)
    return fields


class Reporter:
    """Writes each record to `out` (and syslog, and a hook command)."""

    def __init__(
        self,
        out: IO[str],
        fmt: str = "text",
        syslog: bool = False,
        exec_argv: list[str] | None = None,
        reactor: Any = None,
        clock: Any = None,
        *,
        max_running: int = 4,
        max_queued: int = 1000,
        syslog_fn: Callable[[str], None] | None = None,
        syslog_socket: str = DEFAULT_SOCKET,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"report format must be text or json, not {fmt!r}")
        self.out, self.fmt = out, fmt
        self._clock = clock if clock is not None else reactor
        self._reactor = reactor
        self._syslog = syslog_fn
        self._syslog_socket: SyslogSocket | None = None
        if syslog and syslog_fn is None:  # raises SyslogUnreachable: no silent tripwire
            self._syslog_socket = SyslogSocket(syslog_socket)
            self._syslog = self._syslog_socket.send
        self._argv: list[str] | None = None
        self._pool: ThreadPool | None = None
        if exec_argv:
            program = shutil.which(exec_argv[0])
            if program is None:
                raise ValueError(f"report exec: command not found: {exec_argv[0]}")
            self._argv = [program, *exec_argv[1:]]
            self._pool = ThreadPool(minthreads=0, maxthreads=max_running, name="fs_mirror-report")
            self._pool.start()
        self._cap = max_running + max_queued
        self._pending = 0
        self.dropped = 0
        self._idle: list[Deferred[None]] = []

    def _now(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self._clock.seconds(), tz=datetime.UTC)
        return stamp.isoformat(timespec="milliseconds")

    def format(
        self,
        record: Record,
        serial: int | None,
        *,
        found: Found | None = None,
        was: Mapping[str, str] | None = None,
        digest: str | None = None,
    ) -> str:
        """One report line for `record`, without a newline.

        ``found`` and ``was`` (the fields the baseline had, where they differ)
        are for what a full sync found; ``digest`` is the content's sha256.
        """
        when = self._now()
        fields = meta_fields(record.meta)
        if digest is not None:
            fields["sha256"] = digest
        if self.fmt == "json":
            obj: dict[str, Any] = {"time": when, "serial": serial}
            obj["action"] = record.action.value
            obj["path"] = text_path(record.path)
            if record.target is not None:
                obj["target"] = text_path(record.target)
            obj.update(fields)
            if found is not None:
                obj["found"] = found.value
            if was:
                obj["was"] = dict(was)
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        parts = [when, record.action.value, f"'{text_path(record.path)}'"]
        if record.target is not None:
            parts += ["->", f"'{text_path(record.target)}'"]
        if serial is not None:
            parts.append(f"serial={serial}")
        parts += [f"{k}={v}" for k, v in fields.items()]
        if found is not None:
            parts.append(f"found={found.value}")
        parts += [f"was.{k}={v}" for k, v in (was or {}).items()]
        return " ".join(parts)

    def report(
        self,
        record: Record,
        serial: int | None = None,
        *,
        found: Found | None = None,
        was: Mapping[str, str] | None = None,
        digest: str | None = None,
    ) -> None:
        line = self.format(record, serial, found=found, was=was, digest=digest)
        self._emit(line)
        if self._argv is not None:
            self._run_hook(record, serial, found, digest)

    def summary(self, event: str, text: str, **counts: int) -> None:
        """A line about the report itself (the baseline recorded, a full sync compared)."""
        if self.fmt == "json":
            obj: dict[str, Any] = {"time": self._now(), "event": event, **counts}
            self._emit(json.dumps(obj, separators=(",", ":")))
        else:
            self._emit(f"{self._now()} {event}: {text}")

    def _emit(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        if self._syslog is not None:
            self._syslog(line)

    def hook_env(
        self,
        record: Record,
        serial: int | None,
        found: Found | None = None,
        digest: str | None = None,
    ) -> dict[str, str | bytes]:
        """The hook's environment: ours plus FSM_*; paths as their exact bytes."""
        env: dict[str, str | bytes] = dict(os.environ)
        fields = meta_fields(record.meta)
        env["FSM_ACTION"] = record.action.value
        env["FSM_PATH"] = record.path
        env["FSM_TARGET"] = record.target if record.target is not None else b""
        for key in _META_KEYS:
            env[f"FSM_{key.upper()}"] = fields.get(key, "")
        env["FSM_SERIAL"] = "" if serial is None else str(serial)
        env["FSM_FOUND"] = "" if found is None else found.value
        env["FSM_SHA256"] = digest or ""
        return env

    def _run_hook(
        self, record: Record, serial: int | None, found: Found | None, digest: str | None
    ) -> None:
        if self._pending >= self._cap:
            self.dropped += 1
            log.warn(
                "report exec: {pending} changes waiting, dropped the hook for {path}",
                pending=self._pending,
                path=text_path(record.path),
            )
            return
        assert self._argv is not None and self._pool is not None
        env = {
            os.fsencode(k): os.fsencode(v)
            for k, v in self.hook_env(record, serial, found, digest).items()
        }
        self._pending += 1
        d = deferToThreadPool(self._reactor, self._pool, _run, self._argv, env)
        d.addCallbacks(self._hook_done, self._hook_failed)

    def _hook_done(self, code: int) -> None:
        if code != 0:
            log.warn("report exec: {argv} exited with {code}", argv=self._argv, code=code)
        self._finished()

    def _hook_failed(self, failure: Failure) -> None:
        log.failure("report exec failed", failure)
        self._finished()

    def _finished(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)

    def close(self) -> Deferred[None]:
        """Fires once every queued hook has run; then the pool stops."""
        if self._pending == 0:
            done: Deferred[None] = succeed(None)
        else:
            done = Deferred()
            self._idle.append(done)

        def stop(result: None) -> None:
            if self._syslog_socket is not None:
                self._syslog_socket.close()
            if self._pool is not None:
                self._pool.stop()
                self._pool = None
            return result

        return done.addCallback(stop)


def _run(argv: list[str], env: dict[bytes, bytes]) -> int:
    """Run one hook to completion (worker thread); its output goes to stderr."""
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=2, check=False).returncode
