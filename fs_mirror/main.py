"""The ``fs_mirror`` command: mirror one worker's trees into ``--datadir``.

``fs_mirror -o host=H -o fssync.type=local|ftp|rsync|report --datadir=DIR``
runs in the foreground until SIGTERM/SIGINT (exit 0, after the batch in hand
is applied and its serial saved).  ``--rotate`` makes today's hard-linked
backup in ``rotate.backdir`` and exits.  Exit 2 for a bad option or key
(one line naming it), 1 for anything else with a message saying what to do.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence

from cmdconfig import CommandError, Config
from cmdconfig.cli import make_parser, run
from fs_mirror.config import ALIASES, DEFAULT_FILE, SCHEMA


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="make today's backup in rotate.backdir now and exit",
    )


def _rotate_once(config: Config) -> int:
    from fs_mirror.rotate import RotateError, rotate

    if not config["rotate.backdir"]:
        raise config.error("rotate.backdir", "--rotate needs rotate.backdir")
    host = config["rotate.host"] or config["host"]
    try:
        made = rotate(
            config["datadir"],
            config["rotate.backdir"],
            host,
            datetime.date.today(),
            config["rotate.keep"],
        )
    except RotateError as e:
        raise CommandError(str(e)) from None
    print(f"rotated into {os.fsdecode(made)}")
    return 0


def command(args: argparse.Namespace, config: Config) -> int:
    """Run fs_mirror with a loaded configuration; returns the exit status."""
    if args.rotate:
        return _rotate_once(config)
    from twisted.internet import reactor

    from fs_mirror.service import FsMirrorService

    service = FsMirrorService(config, reactor=reactor, verbose=args.verbose)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    if service.failure is not None:
        raise CommandError(service.failure)
    return 0


PARSER = make_parser(
    "fs_mirror",
    SCHEMA,
    DEFAULT_FILE,
    _extra,
    aliases=ALIASES,
    description="Mirror a mirrord worker's trees into a local directory.",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    return run(PARSER, command, argv)


if __name__ == "__main__":
    sys.exit(main())
