"""``--daemon``: detach with a double fork; ``--pidfile``: write it atomically.

Commands run in the foreground by default (systemd needs nothing else).
With ``--daemon`` the original process waits, through a pipe, until the
detached grandchild says it is ready, so that the pidfile exists when the
command returns and a failed start is a non-zero exit.  A command that can
still fail after detaching (a port in use) asks to say "ready" itself, once
it serves; until then its errors reach the caller's stderr.  Once ready,
standard input and output go to /dev/null, and stderr too unless it is a
file or a socket (``mirrord --daemon ... 2>>log`` and journald keep the
log), so a caller reading the command's output through a pipe is not held
open by the daemon.
"""

from __future__ import annotations

import atexit
import errno
import os
import stat
import sys
from collections.abc import Callable

from cmdconfig.atomic import replace_file
from cmdconfig.errors import CommandError

__all__ = ["check_pidfile", "daemonize", "write_pidfile"]


def _read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, "rb") as f:
            return int(f.read().strip() or b"0") or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def check_pidfile(pidfile: str) -> None:
    """Refuse to start when the pidfile names a live process other than us."""
    pid = _read_pid(pidfile)
    if pid is not None and pid != os.getpid() and _alive(pid):
        raise CommandError(
            f"{pidfile}: already running as pid {pid}; stop it first or use another pidfile"
        )


def write_pidfile(pidfile: str) -> None:
    """Write our pid atomically (``replace_file``); remove it at exit."""
    pid = os.getpid()
    # Registered first: a SIGTERM right after the rename must still remove it
    # (the removal checks the file names us, so an unwritten one is left alone).
    atexit.register(_remove_pidfile, pidfile, pid)
    try:
        replace_file(pidfile, b"%d\n" % pid, 0o644)
    except OSError as e:
        raise CommandError(f"{pidfile}: cannot write pidfile: {e.strerror}") from None


def _remove_pidfile(pidfile: str, pid: int) -> None:
    if _read_pid(pidfile) == pid and os.getpid() == pid:
        try:
            os.unlink(pidfile)
        except OSError:
            pass


def _keep_stderr() -> bool:
    try:
        mode = os.fstat(2).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) and not os.isatty(2)


def _redirect_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if not _keep_stderr():
        sys.stderr.flush()
        os.dup2(null, 2)
    os.close(null)


def _no_op() -> None:
    pass


def daemonize(pidfile: str | None, *, wait_ready: bool = False) -> Callable[[], None]:
    """Detach from the terminal; only the grandchild returns from this call.

    Returns ``ready()``: with ``wait_ready`` the caller calls it once it
    serves (the original process then exits 0; if the grandchild exits
    first, it exits 1).  Without, the start is reported at once.
    """
    if pidfile is not None:
        pidfile = os.path.abspath(pidfile)
        check_pidfile(pidfile)
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()  # not inherited by programs we run
    if os.fork() > 0:
        os.close(ready_w)
        ok = os.read(ready_r, 1)  # EOF (b"") if the grandchild failed
        os._exit(0 if ok == b"1" else 1)
    os.close(ready_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    if pidfile is not None:
        try:
            write_pidfile(pidfile)
        except CommandError as e:
            sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {e}\n")
            sys.stderr.flush()
            os._exit(1)

    def ready() -> None:
        nonlocal ready_w
        if ready_w < 0:
            return
        sys.stdout.flush()
        _redirect_stdio()
        os.write(ready_w, b"1")
        os.close(ready_w)
        ready_w = -1

    if not wait_ready:
        ready()
        return _no_op
    return ready
