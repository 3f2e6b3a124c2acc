"""The ``fs_mirror`` command: mirror one worker's trees into ``--datadir``.

``fs_mirror -o host=H -o fssync.type=local|ftp|rsync|report --datadir=DIR``
runs in the foreground until SIGTERM/SIGINT (exit 0, after the batch in hand
is applied and its serial saved).  ``--rotate`` makes today's hard-linked
backup in ``rotate.backdir`` and exits; ``--status [--json]`` prints the
state of the fs_mirror running on ``--datadir`` (or of the last one) and
exits.  Exit 2 for a bad option or key (one line naming it), 1 for anything
else with a message saying what to do.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.internet.defer import Deferred

from cmdconfig import CommandError, Config, UsageError
from cmdconfig.cli import make_parser, react
from cmdconfig.tls import twisted_ssl
from fs_mirror.config import ALIASES, DEFAULT_FILE, SCHEMA
from fs_mirror.state import DatadirNotPrivate, ensure_private_datadir


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="make today's backup in rotate.backdir now and exit",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print the state of the fs_mirror running on --datadir (or of the last one)",
    )
    parser.add_argument("--json", action="store_true", help="with --status: one JSON object")


def _needs(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--status reads the datadir only: host and fssync.type may be left out."""
    return ("datadir",) if args.status else None


def _show_status(config: Config, as_json: bool) -> int:
    """``fs_mirror --status``: the status file the running (or last) fs_mirror wrote."""
    import json
    import time

    from fs_mirror.statusfile import StatusUnreadable, format_status, read_status, state_of

    datadir = config["datadir"]
    try:
        status = read_status(datadir)
    except (OSError, StatusUnreadable) as e:
        why = e.strerror if isinstance(e, OSError) else str(e)
        raise CommandError(f"cannot read the status in {datadir}: {why}") from None
    if status is None:
        raise CommandError(
            f"no fs_mirror has run on {datadir} (no status file): start fs_mirror"
            f" with --datadir={datadir} first, or check the path"
        )
    if as_json:
        from fs_mirror.health import jsonable

        print(json.dumps({**jsonable(status), "state": state_of(status)}, sort_keys=True))
    else:
        print(format_status(status, time.time()))
    return 0


def _rotate_once(config: Config) -> int:
    from fs_mirror.gate import BatchLock
    from fs_mirror.rotate import RotateError, check_backdir, rotate

    if not config["rotate.backdir"]:
        raise config.error("rotate.backdir", "--rotate needs rotate.backdir")
    try:
        check_backdir(config["datadir"], config["rotate.backdir"])
    except RotateError as e:
        raise config.error("rotate.backdir", str(e)) from None
    host = config["rotate.host"] or config["host"]
    datadir = config["datadir"]
    if not os.path.exists(os.path.join(datadir, "sn")):
        raise CommandError(
            f"{datadir} has no sn file: no full sync has finished there yet;"
            " rotate once fs_mirror has printed 'init finished'"
        )
    lock = BatchLock(datadir)  # a running fs_mirror pauses between batches meanwhile
    try:
        lock.acquire()
        made = rotate(
            datadir, config["rotate.backdir"], host, datetime.date.today(), config["rotate.keep"]
        )
    except RotateError as e:
        raise CommandError(str(e)) from None
    finally:
        lock.close()
    print(f"rotated into {os.fsdecode(made)}")
    return 0


def _check_tls_ca(config: Config) -> None:
    """TLS without its extra, or a tls.ca that is not a PEM certificate: exit 2 naming the key."""
    if not config["tls"]:
        return
    ssl = twisted_ssl("tls")
    if not config["tls.ca"]:
        return
    try:
        with open(config["tls.ca"], "rb") as f:
            data = f.read()
    except OSError as e:
        raise config.error("tls.ca", f"cannot read {config['tls.ca']}: {e.strerror}") from None
    try:
        ssl.Certificate.loadPEM(data)
    except Exception as e:  # OpenSSL's errors share no useful base class
        raise config.error("tls.ca", f"not a PEM certificate ({e})") from None


def _prepare(args: argparse.Namespace, config: Config) -> None:
    """Checks whose failure is the exit status even with --daemon."""
    if not args.rotate and not args.status:
        _check_tls_ca(config)
        try:
            ensure_private_datadir(config["datadir"])
        except DatadirNotPrivate as e:
            raise config.error("datadir", str(e)) from None
        except OSError:
            pass  # cannot create it: the service says so and what to do (exit 1)


def _reopen_log() -> None:
    """SIGHUP: reopen ``log.file`` (logrotate moved it away); fs_mirror runs on."""
    from twisted.logger import Logger

    from cmdconfig.logs import reopen_logging

    log = Logger(namespace="fs_mirror")
    if reopen_logging():
        log.info("SIGHUP: log file reopened")
    else:
        log.info("SIGHUP: logging to stderr, no log file to reopen")


def command(reactor: Any, args: argparse.Namespace, config: Config) -> Any:
    """Run fs_mirror with a loaded configuration, under ``task.react``."""
    if args.status:
        args.ready()
        return _show_status(config, args.json)
    if args.json:
        raise UsageError("--json goes with --status")
    if args.rotate:
        args.ready()
        return _rotate_once(config)
    from fs_mirror.service import FsMirrorService

    service = FsMirrorService(config, reactor=reactor, verbose=args.verbose + config["log.verbose"])
    args.on_reload(_reopen_log)
    args.ready()  # datadir locked, secrets read: --daemon's caller returns 0 now
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    ended: Deferred[None] = Deferred()  # fires only once the reactor has stopped

    def stopped() -> None:
        if service.failure is not None:
            ended.errback(CommandError(service.failure))
        else:
            ended.callback(None)

    reactor.addSystemEventTrigger("after", "shutdown", stopped)
    return ended


PARSER = make_parser(
    "fs_mirror",
    SCHEMA,
    DEFAULT_FILE,
    _extra,
    aliases=ALIASES,
    description="Mirror a mirrord worker's trees into a local directory.",
    needs=_needs,
)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point: exits with the command's status."""
    react(PARSER, command, argv, prepare=_prepare, ready_when_serving=True)


if __name__ == "__main__":
    main()
