"""Operator-facing log lines: ``2026-11-22T03:20:00 [mirrord] message``.

Every command logs through ``twisted.logger`` with format strings and
fields; this module decides what reaches stderr (or ``log.file``).  ``-v``
lowers the minimum level from info to debug.  Under systemd, when
``JOURNAL_STREAM`` names the device and inode of our stderr (systemd.exec(5)),
each line starts with its syslog priority (``<3>`` error, ``<4>`` warning,
``<6>`` info, ``<7>`` debug, sd-daemon(3)) and no timestamp, since journald
stamps it.  The global log beginner can only begin once per process, so
``setup_logging`` installs one switchable observer and later calls only
retarget it (tests run several commands in one process; SIGHUP re-reads the
verbosity and reopens the log file).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsText,
    globalLogBeginner,
)
from zope.interface import implementer  # type: ignore[import-untyped]

__all__ = [
    "LogFile",
    "format_line",
    "journal_wanted",
    "make_observer",
    "reopen_logging",
    "setup_logging",
]

_LEVEL_PREFIX = {
    LogLevel.warn: "warning: ",
    LogLevel.error: "error: ",
    LogLevel.critical: "critical: ",
}

#: syslog priorities of twisted's levels (sd-daemon(3)'s ``SD_ERR`` and friends)
PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


# Control characters in a message (a file name with a newline or TAB) would
# split one event over several lines: show them escaped, like \xff already is.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def format_line(event: LogEvent, prog: str, *, journal: bool = False) -> str:
    """One event as one line (plus its traceback if it carries a failure).

    ``journal``: each line, the traceback's too, starts with the event's
    priority, so journald files the whole of it at that level.
    """
    text = eventAsText(event, includeTimestamp=False, includeSystem=False, includeTraceback=False)
    full = eventAsText(event, includeTimestamp=False, includeSystem=False, includeTraceback=True)
    tail = full[len(text) :] if full.startswith(text) else ""
    level = event.get("log_level")
    prefix = _LEVEL_PREFIX.get(level, "")
    line = text.rstrip().translate(_CONTROL)
    if not journal:
        when = time.localtime(event.get("log_time", time.time()))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", when)
        return f"{stamp} [{prog}] {prefix}{line}{tail.rstrip()}\n"
    mark = f"<{PRIORITY.get(level, 6)}>"
    rest = [mark + more for more in tail.rstrip().splitlines() if more.strip()]
    return "\n".join([f"{mark}[{prog}] {prefix}{line}", *rest]) + "\n"


def parse_journal_stream(value: str) -> tuple[int, int] | None:
    """``JOURNAL_STREAM``'s ``DEVICE:INODE`` (decimal), or None when it is not that."""
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return None
    return int(dev), int(ino)


def journal_wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Is ``stream`` the journal's own socket (so priorities mean something there)?

    systemd sets ``JOURNAL_STREAM`` for a service whose stderr is the
    journal; a child that inherited the variable with stderr redirected
    elsewhere sees other numbers and writes plain lines.
    """
    env = os.environ if environ is None else environ
    want = parse_journal_stream(env.get("JOURNAL_STREAM", ""))
    if want is None:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == want


class LogFile:
    """``log.file``: appended to, and reopened on SIGHUP so logrotate can move it away."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: TextIO = self._open()

    def _open(self) -> TextIO:
        return open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115

    def reopen(self) -> None:
        """Open the path again (a new file if it was rotated), then close the old one."""
        fresh = self._open()
        old, self.stream = self.stream, fresh
        old.close()

    def write(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@implementer(ILogObserver)
class _StreamObserver:
    def __init__(self, stream: TextIO | LogFile, prog: str, journal: bool) -> None:
        self.stream, self.prog, self.journal = stream, prog, journal

    def __call__(self, event: LogEvent) -> None:
        try:
            self.stream.write(format_line(event, self.prog, journal=self.journal))
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed (daemon, broken pipe): nothing sensible to do


# constantly's named constants are untyped: give the two we return their type.
_MAYBE: PredicateResult = PredicateResult.maybe
_NO: PredicateResult = PredicateResult.no


@implementer(ILogFilterPredicate)
class _QuietLibraries:
    """Twisted's own chatter ("Starting factory", every FTP data channel) is for
    ``-vv``; its warnings and errors always get through."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def __call__(self, event: LogEvent) -> PredicateResult:
        if self.verbosity >= 2 or event.get("log_level", LogLevel.info) >= LogLevel.warn:
            return _MAYBE
        namespace = str(event.get("log_namespace", ""))
        if namespace == "log_legacy" or namespace.startswith("twisted."):
            return _NO
        return _MAYBE


def make_observer(
    verbosity: int, stream: TextIO | LogFile, prog: str, *, journal: bool = False
) -> Any:
    """An observer writing events of the chosen minimum level to ``stream``."""
    level = LogLevel.debug if verbosity > 0 else LogLevel.info
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=level)
    observer: Any = _StreamObserver(stream, prog, journal)
    quiet: Any = _QuietLibraries(verbosity)  # an ILogFilterPredicate, which mypy cannot see
    return FilteringLogObserver(observer, [quiet, predicate])


@implementer(ILogObserver)
class _Switch:
    target: Any = None

    def __call__(self, event: LogEvent) -> None:
        if self.target is not None:
            self.target(event)


_switch: _Switch | None = None
_file: LogFile | None = None


def setup_logging(verbosity: int, stream: TextIO, prog: str, path: str = "") -> None:
    """Send the global twisted.logger stream to ``stream`` (or the file ``path``) from now on.

    Called again (SIGHUP), it takes the new verbosity and file; the same
    file is reopened, not kept open twice.
    """
    global _switch, _file
    if path and _file is not None and _file.path == path:
        _file.reopen()
    elif path:
        fresh = LogFile(path)  # OSError when it cannot be opened: the caller says which key
        if _file is not None:
            _file.stream.close()
        _file = fresh
    elif _file is not None:
        _file.stream.close()
        _file = None
    target: TextIO | LogFile = _file if _file is not None else stream
    journal = _file is None and journal_wanted(stream)
    observer = make_observer(verbosity, target, prog, journal=journal)
    if _switch is None:
        _switch = _Switch()
        _switch.target = observer
        switch: Any = _switch
        globalLogBeginner.beginLoggingTo([switch], redirectStandardIO=False)
    else:
        _switch.target = observer


def reopen_logging() -> bool:
    """Reopen ``log.file`` (SIGHUP after a rotation); False when logging to stderr."""
    if _file is None:
        return False
    _file.reopen()
    return True
