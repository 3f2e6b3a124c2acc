"""The ``mirrord`` command: run the daemon, or talk to a running one with ``-k``."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from typing import Any

from cmdconfig.cli import make_parser, run
from cmdconfig.errors import CommandError, ConfigError, UsageError
from mirrord.config import SCHEMA

DEFAULT_CONFIG = "/etc/mirrord.conf"


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k",
        nargs="+",
        metavar="COMMAND",
        dest="control",
        help="talk to the running daemon: 'status', 'include PATH' or 'exclude PATH'",
    )


def control_socket(config: Any) -> str:
    return config["control.socket"] or os.path.join(config["datadir"], "mirrord.sock")


def _control(args: argparse.Namespace, config: Any) -> int:
    from mirrord import control

    words = args.control
    if words == ["status"]:
        cmd, path = "status", None
    elif len(words) == 2 and words[0] in ("include", "exclude"):
        cmd, path = words[0], os.path.abspath(words[1])
    else:
        raise UsageError("-k takes 'status', 'include PATH' or 'exclude PATH'")
    sock = control_socket(config)
    try:
        reply = control.request(sock, cmd, path)
    except OSError as exc:
        raise CommandError(
            f"cannot reach mirrord at {sock} ({exc.strerror or exc}): "
            "is it running with this datadir?"
        ) from None
    if not reply.get("ok", True):
        raise CommandError(reply.get("error", "request failed"))
    if cmd == "status":
        if args.verbose:
            print(json.dumps(reply, indent=2, default=str))
        else:
            print(control.format_status(reply))
    else:
        print(reply.get("result", reply))
    return 0


def _lock_datadir(datadir: str) -> Any:
    """One mirrord per datadir: the Berkeley DB environment is ours alone."""
    if not os.path.isdir(datadir):
        raise CommandError(
            f"datadir {datadir} does not exist: create it and name what to "
            f"mirror with `fs_info -o datadir={datadir} -a t:/PATH`"
        )
    handle = open(os.path.join(datadir, "mirrord.lock"), "a+")  # noqa: SIM115 (held for life)
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        raise CommandError(f"another mirrord (pid {pid}) is running on datadir {datadir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _serve(args: argparse.Namespace, config: Any) -> int:
    from twisted.internet import reactor

    from mirrord.service import MirrordService, StartupError

    lock = _lock_datadir(config["datadir"])
    service = MirrordService(config, reactor)
    failure: list[BaseException] = []

    def failed(f: Any) -> None:
        failure.append(f.value)
        if not isinstance(f.value, (StartupError, ConfigError, CommandError, OSError)):
            f.printTraceback(file=sys.stderr)
        reactor.stop()

    def start() -> None:
        service.startService()
        service.ready.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    lock.close()
    if failure:
        exc = failure[0]
        if isinstance(exc, ConfigError):
            raise exc
        raise CommandError(str(exc))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "mirrord",
        SCHEMA,
        DEFAULT_CONFIG,
        _extra,
        description="Watch the included trees and serve their change log.",
    )

    def dispatch(args: argparse.Namespace, config: Any) -> int:
        if args.control:
            return _control(args, config)
        return _serve(args, config)

    return run(parser, dispatch, argv, log=True)


if __name__ == "__main__":
    sys.exit(main())
