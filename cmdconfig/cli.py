"""The options every command shares, and the one place exit statuses are decided.

``-v`` (repeatable), ``-c FILE``, ``-o KEY=VALUE`` (repeatable), ``--daemon``,
``--pidfile FILE`` and ``--help`` (which lists every configuration key with
its default).  A command adds its own options through ``extra`` and maps
long options onto keys through ``aliases`` (``--datadir=DIR`` is
``-o datadir=DIR``).  Overrides apply in command-line order, after the file.

``run`` keeps each command's ``main`` tiny: it parses, loads the config,
sets up logging, detaches if asked, calls the command, and maps what
happens to an exit status (``exits.exit_status``): 0 for a clean stop (also
SIGTERM/SIGINT), 2 and one line on stderr for a usage or configuration
error, 1 otherwise.  ``react`` does the same for a daemon whose work runs in
the reactor: the command runs under ``task.react`` and how its Deferred
ends goes through the same map.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn

from cmdconfig.daemon import daemonize, write_pidfile
from cmdconfig.errors import UsageError
from cmdconfig.exits import exit_status
from cmdconfig.loader import Config, load
from cmdconfig.schema import Schema
from cmdconfig.version import __version__

__all__ = ["CommandParser", "make_parser", "react", "run", "start_logging"]

Main = Callable[[argparse.Namespace, Config], "int | None"]
#: ``serve(reactor, args, config)``: a Deferred, a coroutine or a plain status.
Serve = Callable[[Any, argparse.Namespace, Config], object]
Prepare = Callable[[argparse.Namespace, Config], None]
#: Which keys without a default this command line must give (None: all of them).
Needs = Callable[[argparse.Namespace], "Collection[str] | None"]


class _Override(argparse.Action):
    """Append ``(key, value, origin)`` to ``namespace.overrides``."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, key: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(option_strings, "overrides", **kwargs)
        self.key = key

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, "overrides", None) or [])
        if self.key is None:
            key, sep, value = str(values).partition("=")
            if not sep or not key.strip():
                raise argparse.ArgumentError(self, f"expected KEY=VALUE, got {values!r}")
            items.append((key.strip(), value.strip(), "-o"))
        else:
            items.append((self.key, str(values), str(option_string)))
        namespace.overrides = items


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that knows its schema and raises instead of exiting."""

    def __init__(
        self,
        prog: str,
        schema: Schema,
        default_config: str | None,
        aliases: Mapping[str, str],
        description: str | None,
        needs: Needs | None = None,
    ) -> None:
        super().__init__(
            prog=prog,
            description=description,
            epilog=schema.help_text(dict(aliases)),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.schema = schema
        self.default_config = default_config
        self.needs = needs

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def load(self, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Config]:
        """Parse ``argv`` and load the configuration it selects."""
        args = self.parse_args(argv)
        return args, self.reload(args)

    def reload(self, args: argparse.Namespace) -> Config:
        """The configuration ``args`` select, read again (SIGHUP): the file, then the overrides."""
        path = args.config if args.config is not None else self.default_config
        required = self.needs(args) if self.needs is not None else None
        return load(
            self.schema,
            path,
            args.overrides,
            required_file=args.config is not None,
            required=required,
        )


def package_version() -> str:
    """The project's version (``cmdconfig.version``, which the distribution's metadata reads)."""
    return __version__


def make_parser(
    prog: str,
    schema: Schema,
    default_config: str | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
    description: str | None = None,
    needs: Needs | None = None,
) -> CommandParser:
    """The shared options, then the command's own (``extra``); ``needs`` lets a
    mode of the command (``fs_mirror --status``) require fewer keys."""
    aliases = dict(aliases or {})
    parser = CommandParser(prog, schema, default_config, aliases, description, needs)
    where = f" (default {default_config})" if default_config else ""
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output (repeatable)"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{prog} {package_version()}",
        help="print the command's name and version, and exit",
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=None, help=f"configuration file{where}"
    )
    parser.add_argument(
        "-o",
        action=_Override,
        metavar="KEY=VALUE",
        default=[],
        help="set a configuration key, overriding the file (repeatable)",
    )
    for option, key in aliases.items():
        parser.add_argument(
            option,
            action=_Override,
            key=key,
            default=[],
            metavar=schema[key].metavar(),
            help=f"same as -o {key}=...",
        )
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="detach and run in the background (use with --pidfile)",
    )
    parser.add_argument(
        "--pidfile", metavar="FILE", default=None, help="write the process id to FILE"
    )
    if extra is not None:
        extra(parser)
    return parser


#: Code that catches BaseException around what it calls (Twisted's log
#: publisher and event formatter do): a SystemExit raised in there by the
#: SIGTERM handler is swallowed and the command would keep running.
_SWALLOWS = ("twisted.logger", "twisted.python.log", "twisted.python.failure")
_RETRY_S = 0.01


def _in_swallowing_code(frame: FrameType | None) -> bool:
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_SWALLOWS):
            return True
        frame = frame.f_back
    return False


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the reactor runs: stop with exit 0 (the reactor has its own handler).

    Raised inside code that would swallow it, the stop is tried again a
    moment later (SIGALRM) rather than lost.
    """
    if _in_swallowing_code(frame):
        signal.signal(signal.SIGALRM, _terminate)
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
        return
    raise SystemExit(0)


def _no_op() -> None:
    pass


def start_logging(args: argparse.Namespace, config: Config, prog: str) -> None:
    """Log at ``-v`` plus ``log.verbose`` to ``log.file`` or stderr (again on SIGHUP)."""
    from cmdconfig.logs import setup_logging  # twisted: only when logging

    path = config.get("log.file", "")
    try:
        setup_logging(args.verbose + config.get("log.verbose", 0), sys.stderr, prog, path)
    except OSError as e:
        raise config.error("log.file", f"cannot open {path}: {e.strerror}") from None


def _begin(
    parser: CommandParser,
    argv: Sequence[str] | None,
    log: bool,
    prepare: Prepare | None,
    ready_when_serving: bool,
) -> tuple[argparse.Namespace, Config]:
    """Parse, load the config, set up logging, check, detach if asked."""
    args, config = parser.load(argv)
    if log:
        start_logging(args, config, parser.prog)
    args.reread = lambda: parser.reload(args)  # the configuration again, for SIGHUP
    if prepare is not None:
        prepare(args, config)
    args.ready = _no_op
    if args.daemon:
        args.ready = daemonize(args.pidfile, wait_ready=ready_when_serving)
    elif args.pidfile:
        write_pidfile(args.pidfile)
    return args, config


def _stop_signals() -> Callable[[], None]:
    """SIGTERM and SIGINT stop the command with exit 0; returns what puts them back."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    # A shell starts background jobs with SIGINT ignored; the contract says
    # SIGINT is a clean stop, so take it back (KeyboardInterrupt -> exit 0;
    # the reactor, too, handles SIGINT only when it finds this handler).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_alrm = signal.getsignal(signal.SIGALRM)
    previous_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reactor runs

    def restore() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)  # a stop retry still pending
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGALRM, previous_alrm)
        signal.signal(signal.SIGHUP, previous_hup)

    return restore


def _stop_in_reactor(reactor: Any) -> None:
    """From here on SIGTERM and SIGINT stop the reactor, also before it runs.

    A stop raised as SystemExit while the reactor starts could be swallowed
    by it; asking the reactor to stop (signal-safe, as its own handler does)
    is a clean stop wherever the signal lands.  A stop already pending (the
    retry ``_terminate`` scheduled) is asked for now.
    """

    def stop(signum: int = 0, frame: FrameType | None = None) -> None:
        reactor.callFromThread(_stop_reactor, reactor)

    pending = signal.setitimer(signal.ITIMER_REAL, 0)[0] > 0
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if pending:
        stop()


def _reload_in_reactor(reactor: Any, prog: str) -> Callable[[Callable[[], object]], None]:
    """From here on SIGHUP runs the hooks registered with the returned function, in the
    reactor; with none registered it is logged and ignored (never the default: exit)."""
    from twisted.logger import Logger

    hooks: list[Callable[[], object]] = []
    log = Logger(namespace=prog)

    def run_hooks() -> None:
        if not hooks:
            log.info("SIGHUP: nothing to reload")
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.failure("SIGHUP: reloading failed; running on as before")

    def hup(signum: int = 0, frame: FrameType | None = None) -> None:
        reactor.callFromThread(run_hooks)

    signal.signal(signal.SIGHUP, hup)
    return hooks.append


def _stop_reactor(reactor: Any) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def run(
    parser: CommandParser,
    main: Main,
    argv: Sequence[str] | None = None,
    *,
    log: bool = True,
    prepare: Prepare | None = None,
    ready_when_serving: bool = False,
) -> int:
    """Run ``main(args, config)`` and return the command's exit status.

    ``prepare`` runs before ``--daemon`` detaches (checks whose failure
    should be the caller's exit status).  With ``ready_when_serving``,
    ``main`` calls ``args.ready()`` once it serves, and ``--daemon``
    returns only then (exit 1 if the command fails first);
    otherwise ``args.ready`` does nothing and ``--daemon`` returns at once.
    """
    restore = _stop_signals()
    try:
        args, config = _begin(parser, argv, log, prepare, ready_when_serving)
        return int(main(args, config) or 0)
    except BaseException as e:
        return exit_status(parser.prog, e)
    finally:
        restore()


def react(
    parser: CommandParser,
    serve: Serve,
    argv: Sequence[str] | None = None,
    *,
    log: bool = True,
    prepare: Prepare | None = None,
    ready_when_serving: bool = False,
) -> NoReturn:
    """As ``run``, with ``serve(reactor, args, config)`` run under ``task.react``.

    Everything before ``serve`` (parsing, checks, ``--daemon``) happens
    before the reactor is imported.  The process exits: 0 when the reactor
    is stopped by SIGTERM/SIGINT (or ``serve`` ends with nothing), else the
    status ``exit_status`` gives for how ``serve`` failed or the status it
    returned.
    """
    prog = parser.prog
    _stop_signals()
    try:
        args, config = _begin(parser, argv, log, prepare, ready_when_serving)
    except BaseException as e:
        sys.exit(exit_status(prog, e))

    from twisted.internet import defer, task
    from twisted.python.failure import Failure

    def ended(result: object) -> None:
        if isinstance(result, Failure):
            failure: Any = result  # printTraceback is untyped
            code = exit_status(
                prog, result.value, lambda _: failure.printTraceback(file=sys.stderr)
            )
        else:
            code = result if isinstance(result, int) else 0
        if code:
            raise SystemExit(code)  # task.react exits with a SystemExit's code

    def main(reactor: Any) -> defer.Deferred[None]:
        _stop_in_reactor(reactor)
        args.on_reload = _reload_in_reactor(reactor, prog)
        return defer.maybeDeferred(serve, reactor, args, config).addBoth(ended)

    task.react(main)
