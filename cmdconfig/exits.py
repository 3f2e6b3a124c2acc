"""The one map from how a command ended to its exit status (contract section 3).

0 for a clean stop (SIGTERM, SIGINT, or ``main`` returning nothing), 2 and
one line on stderr for a usage or configuration error, 1 and one line for
anything else; an exception nobody expected adds its traceback, since that
is a bug to report.  ``cli.run`` uses it for what ends synchronously and
``cli.react`` for what ends in the reactor, so both say the same thing.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from cmdconfig.errors import CommandError, ConfigError, UsageError

__all__ = ["CLEAN", "FAILED", "MEANINGS", "USAGE", "exit_status", "say"]

CLEAN = 0
FAILED = 1
USAGE = 2
#: What each status tells the caller, in the words the manual pages print.
MEANINGS = {
    CLEAN: "a clean stop: the work is done, or SIGTERM or SIGINT stopped the command",
    USAGE: "a usage or configuration error; one line on stderr names the bad option,"
    " key or file, and running again unchanged cannot help",
    FAILED: "anything else (a port in use, an unreachable daemon, a full disk, a bug);"
    " one line on stderr says what to do",
}


def say(prog: str, message: str) -> None:
    """``prog: message`` on stderr, always one line."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: {line}\n")
    sys.stderr.flush()


def _print_exception(exc: BaseException) -> None:
    traceback.print_exception(type(exc), exc, exc.__traceback__)


def exit_status(
    prog: str,
    exc: BaseException,
    print_traceback: Callable[[BaseException], None] = _print_exception,
) -> int:
    """Say what ``exc`` means for the person running ``prog`` and return the exit status.

    ``print_traceback`` shows a bug's traceback (a Twisted ``Failure`` keeps
    its own: pass ``lambda _: failure.printTraceback()``).
    """
    if isinstance(exc, UsageError):
        say(prog, f"{exc} (see {prog} --help)")
        return USAGE
    if isinstance(exc, ConfigError):
        say(prog, str(exc))
        return USAGE
    if isinstance(exc, CommandError):
        say(prog, str(exc))
        return FAILED
    if isinstance(exc, KeyboardInterrupt):
        return CLEAN
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (CLEAN if exc.code is None else FAILED)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        say(prog, f"{where}{exc.strerror or exc}")
        return FAILED
    print_traceback(exc)
    say(prog, "internal error (traceback above); please report it")
    return FAILED
