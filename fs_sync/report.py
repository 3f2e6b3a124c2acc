"""The `report` mode: print every change instead of applying it.

This is the realtime tripwire: one line per record, as text for a person or
JSON for a log pipeline, optionally to syslog, and optionally a hook command
run per change. Hooks run with an argument vector (never a shell) and the
change in FSM_* environment variables; at most `max_running` run at once and
at most `max_queued` wait, so a burst of changes cannot fork-bomb the host:
past the cap a change is dropped from the hook (still printed) with a warning.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()

_META_KEYS = ("mode", "uid", "gid", "size", "mtime")


def text_path(path: bytes) -> str:
    """Readable, reversible text for a path.

    Like the wire quoting (0x00-0x1F, 0x7F and `%` as `%XX`), and in
    addition every byte that is not part of valid UTF-8 as `%XX`, so the
    result is always valid text (and valid JSON) and decodes back exactly.
    """
    out: list[str] = []
    for ch in path.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"%{code - 0xDC00:02X}")
        elif code < 0x20 or code == 0x7F or ch == "%":
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


def format_mtime(mtime_ns: int) -> str:
    """Seconds with up to 9 fraction digits, as on the wire."""
    seconds, frac = divmod(mtime_ns, 1_000_000_000)
    if not frac:
        return str(seconds)
    return f"{seconds}.{frac:09d}".rstrip("0")


def meta_fields(meta: Any) -> dict[str, str]:
    """The metadata a record carries, as wire-style strings (absent keys left out)."""
    fields: dict[str, str] = {}
    if getattr(meta, "mode", None) is not None:
        fields["mode"] = f"{meta.mode:04o}"
    for key in ("uid", "gid", "size"):
        value = getattr(meta, key, None)
        if value is not None:
            fields[key] = str(value)
    if getattr(meta, "mtime_ns", None) is not None:
        fields["mtime"] = format_mtime(meta.mtime_ns)
    return fields


def _action_name(record: Any) -> str:
    action = record.action
    return str(getattr(action, "value", action))


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
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"report format must be text or json, not {fmt!r}")
        self.out, self.fmt = out, fmt
        self._clock = clock if clock is not None else reactor
        self._reactor = reactor
        self._syslog = syslog_fn
        if syslog and syslog_fn is None:
            import syslog as _syslog

            self._syslog = lambda line: _syslog.syslog(_syslog.LOG_INFO, line)
        self._argv: list[str] | None = None
        self._pool: ThreadPool | None = None
        if exec_argv:
            program = shutil.which(exec_argv[0])
            if program is None:
                raise ValueError(f"report exec: command not found: {exec_argv[0]}")
            self._argv = [program, *exec_argv[1:]]
            self._pool = ThreadPool(minthreads=0, maxthreads=max_running, name="fs_sync-report")
            self._pool.start()
        self._cap = max_running + max_queued
        self._pending = 0
        self.dropped = 0
        self._idle: list[Deferred[None]] = []

    def format(self, record: Any, serial: int | None) -> str:
        """One report line for `record`, without a newline."""
        stamp = datetime.datetime.fromtimestamp(self._clock.seconds(), tz=datetime.UTC)
        when = stamp.isoformat(timespec="milliseconds")
        fields = meta_fields(record.meta)
        if self.fmt == "json":
            obj: dict[str, Any] = {"time": when, "serial": serial}
            obj["action"] = _action_name(record)
            obj["path"] = text_path(record.path)
            if record.target is not None:
                obj["target"] = text_path(record.target)
            obj.update(fields)
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        parts = [when, _action_name(record), f"'{text_path(record.path)}'"]
        if record.target is not None:
            parts += ["->", f"'{text_path(record.target)}'"]
        if serial is not None:
            parts.append(f"serial={serial}")
        parts += [f"{k}={v}" for k, v in fields.items()]
        return " ".join(parts)

    def report(self, record: Any, serial: int | None = None) -> None:
        line = self.format(record, serial)
        self.out.write(line + "\n")
        self.out.flush()
        if self._syslog is not None:
            self._syslog(line)
        if self._argv is not None:
            self._run_hook(record, serial)

    def hook_env(self, record: Any, serial: int | None) -> dict[str, str | bytes]:
        """The hook's environment: ours plus FSM_*; paths as their exact bytes."""
        env: dict[str, str | bytes] = dict(os.environ)
        fields = meta_fields(record.meta)
        env["FSM_ACTION"] = _action_name(record)
        env["FSM_PATH"] = record.path
        env["FSM_TARGET"] = record.target if record.target is not None else b""
        for key in _META_KEYS:
            env[f"FSM_{key.upper()}"] = fields.get(key, "")
        env["FSM_SERIAL"] = "" if serial is None else str(serial)
        return env

    def _run_hook(self, record: Any, serial: int | None) -> None:
        if self._pending >= self._cap:
            self.dropped += 1
            log.warn(
                "report exec: {pending} changes waiting, dropped the hook for {path}",
                pending=self._pending,
                path=text_path(record.path),
            )
            return
        assert self._argv is not None and self._pool is not None
        env = {os.fsencode(k): os.fsencode(v) for k, v in self.hook_env(record, serial).items()}
        self._pending += 1
        d = deferToThreadPool(self._reactor, self._pool, _run, self._argv, env)
        d.addCallbacks(self._hook_done, self._hook_failed)

    def _hook_done(self, code: int) -> None:
        if code != 0:
            log.warn("report exec: {argv} exited with {code}", argv=self._argv, code=code)
        self._finished()

    def _hook_failed(self, failure: Any) -> None:
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
            if self._pool is not None:
                self._pool.stop()
                self._pool = None
            return result

        return done.addCallback(stop)


def _run(argv: list[str], env: dict[bytes, bytes]) -> int:
    """Run one hook to completion (worker thread); its output goes to stderr."""
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=2, check=False).returncode
