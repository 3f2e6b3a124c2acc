"""The ``mirrord`` command: run the daemon, or talk to a running one with ``-k``."""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import sys
from typing import Any, NoReturn

from twisted.internet import defer
from twisted.python.failure import Failure

from cmdconfig import Config
from cmdconfig.cli import CommandParser, make_parser, react
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
    parser.add_argument("--json", action="store_true", help="with -k status: print one JSON object")


def control_socket(config: Config) -> str:
    return config["control.socket"] or os.path.join(config["datadir"], "mirrord.sock")


def _control(args: argparse.Namespace, config: Config) -> int:
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
        if args.json:
            print(json.dumps(reply, default=str))
        elif args.verbose:
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


def _cannot_listen(exc: Any, config: Config) -> str:
    """What to do when a port cannot be bound (in use, bad address, no permission)."""
    where = f"{exc.interface or '0.0.0.0'}:{exc.port}"
    error = exc.socketError
    reason = getattr(error, "strerror", None) or str(error)
    port, bind = "port", "bind"
    for prefix in ("ftp.", "metrics."):  # which of our ports it is, to name its keys
        if config[prefix + "port"] and exc.port == config[prefix + "port"]:
            port, bind = prefix + "port", prefix + "bind"
    if getattr(error, "errno", None) == errno.EADDRINUSE:
        todo = f"stop the program using it or choose another port with -o {port}=N"
    elif getattr(error, "errno", None) == errno.EACCES:
        todo = f"run as root or choose a port above 1023 with -o {port}=N"
    else:
        todo = f"give an address of this host with -o {bind}=ADDR"
    return f"cannot listen on {where} ({reason}): {todo}"


def _check_files(config: Config) -> None:
    """Secrets and TLS files are read now: a bad one is exit 2 naming its key."""
    for key in ("auth.secret-from", "ftp.password-from"):
        config.secret(key)
    if not config["tls.cert"]:
        return
    from cmdconfig.tls import twisted_ssl
    from mirrord.listeners import tls_options

    twisted_ssl("tls.cert")  # exit 2 naming the extra when it is not installed

    for key in ("tls.cert", "tls.key"):
        try:
            with open(config[key], "rb"):
                pass
        except OSError as e:
            raise config.error(key, f"cannot read {config[key]}: {e.strerror}") from None
    try:
        tls_options(config["tls.cert"], config["tls.key"])
    except Exception as e:  # OpenSSL's errors share no useful base class
        raise config.error(
            "tls.cert", f"cannot load a PEM certificate and key from tls.cert and tls.key ({e})"
        ) from None


def _sighup(service: Any, args: argparse.Namespace) -> None:
    """Re-read the configuration (keep the running one if it no longer loads), then the
    identities; the log file is reopened either way."""
    from twisted.logger import Logger

    from cmdconfig.cli import start_logging
    from cmdconfig.logs import reopen_logging

    try:
        config = args.reread()
    except ConfigError as e:
        reopen_logging()
        Logger(namespace="mirrord").error(
            "SIGHUP: {error}; running on with the configuration as it was", error=e
        )
    else:
        service.reconfigure(config, lambda new: start_logging(args, new, "mirrord"))
    service.reload()


def _start(reactor: Any, args: argparse.Namespace, config: Config) -> defer.Deferred[None]:
    """Build and start the service tree; fires once it serves. SIGHUP reloads it."""
    from mirrord.service import makeService

    service = makeService(config, reactor)
    args.on_reload(lambda: _sighup(service, args))
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    service.startService()
    return service.ready


def _why(failure: Failure, config: Config) -> NoReturn:
    """What a failed start means for the operator: exit 2 for config, else 1."""
    from twisted.internet.error import CannotListenError

    from fs_info.store import IdentityStoreError
    from mirrord.service import StartupError
    from mirrord.store import StoreError

    exc = failure.value
    expected = (StartupError, ConfigError, CommandError, OSError, CannotListenError)
    if not isinstance(exc, (*expected, IdentityStoreError, StoreError)):
        failure.printTraceback(file=sys.stderr)
    if isinstance(exc, ConfigError):
        raise exc
    if isinstance(exc, IdentityStoreError):  # a bad .t_files/.x_files line or identity name
        raise ConfigError(str(exc)) from None
    if isinstance(exc, CannotListenError):
        raise CommandError(_cannot_listen(exc, config)) from None
    raise CommandError(str(exc))


def _serve(reactor: Any, args: argparse.Namespace, config: Config) -> defer.Deferred[Any]:
    """Serve until SIGTERM/SIGINT stops the reactor (exit 0), or fail starting."""
    lock = _lock_datadir(config["datadir"])
    reactor.addSystemEventTrigger("after", "shutdown", lock.close)
    d = defer.maybeDeferred(_start, reactor, args, config)
    d.addCallbacks(lambda _: args.ready(), lambda f: _why(f, config))  # --daemon returns now

    return d.addCallback(lambda _: defer.Deferred())  # never fires: served until stopped


def make_mirrord_parser() -> CommandParser:
    """mirrord's command line (also what its manual page lists)."""
    return make_parser(
        "mirrord",
        SCHEMA,
        DEFAULT_CONFIG,
        _extra,
        description="Watch the included trees and serve their change log.",
    )


def main(argv: list[str] | None = None) -> NoReturn:
    parser = make_mirrord_parser()

    def prepare(args: argparse.Namespace, config: Config) -> None:
        if not args.control:
            _check_files(config)  # exit 2 here, before --daemon detaches

    def dispatch(reactor: Any, args: argparse.Namespace, config: Config) -> Any:
        if args.control:
            args.ready()
            return _control(args, config)
        return _serve(reactor, args, config)

    react(parser, dispatch, argv, log=True, prepare=prepare, ready_when_serving=True)


if __name__ == "__main__":
    main()
