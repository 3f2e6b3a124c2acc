"""Operator-facing log lines: ``2026-11-22T03:20:00 [mirrord] message``.

Every command logs through ``twisted.logger`` with format strings and
fields; this module decides what reaches stderr.  ``-v`` lowers the minimum
level from info to debug.  The global log beginner can only begin once per
process, so ``setup_logging`` installs one switchable observer and later
calls only retarget it (tests run several commands in one process).
"""

from __future__ import annotations

import time
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

__all__ = ["format_line", "make_observer", "setup_logging"]

_LEVEL_PREFIX = {
    LogLevel.warn: "warning: ",
    LogLevel.error: "error: ",
    LogLevel.critical: "critical: ",
}


# Control characters in a message (a file name with a newline or TAB) would
# split one event over several lines: show them escaped, like \xff already is.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def format_line(event: LogEvent, prog: str) -> str:
    """One event as one line (plus its traceback if it carries a failure)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.get("log_time", time.time())))
    text = eventAsText(event, includeTimestamp=False, includeSystem=False, includeTraceback=False)
    full = eventAsText(event, includeTimestamp=False, includeSystem=False, includeTraceback=True)
    tail = full[len(text) :] if full.startswith(text) else ""
    prefix = _LEVEL_PREFIX.get(event.get("log_level"), "")
    line = text.rstrip().translate(_CONTROL)
    return f"{stamp} [{prog}] {prefix}{line}{tail.rstrip()}\n"


@implementer(ILogObserver)
class _StreamObserver:
    def __init__(self, stream: TextIO, prog: str) -> None:
        self.stream = stream
        self.prog = prog

    def __call__(self, event: LogEvent) -> None:
        try:
            self.stream.write(format_line(event, self.prog))
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


def make_observer(verbosity: int, stream: TextIO, prog: str) -> Any:
    """An observer writing events of the chosen minimum level to ``stream``."""
    level = LogLevel.debug if verbosity > 0 else LogLevel.info
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=level)
    observer: Any = _StreamObserver(stream, prog)
    quiet: Any = _QuietLibraries(verbosity)  # an ILogFilterPredicate, which mypy cannot see
    return FilteringLogObserver(observer, [quiet, predicate])


@implementer(ILogObserver)
class _Switch:
    target: Any = None

    def __call__(self, event: LogEvent) -> None:
        if self.target is not None:
            self.target(event)


_switch: _Switch | None = None


def setup_logging(verbosity: int, stream: TextIO, prog: str) -> None:
    """Send the global twisted.logger stream to ``stream`` from now on."""
    global _switch
    observer = make_observer(verbosity, stream, prog)
    if _switch is None:
        _switch = _Switch()
        _switch.target = observer
        switch: Any = _switch
        globalLogBeginner.beginLoggingTo([switch], redirectStandardIO=False)
    else:
        _switch.target = observer
