"""Tests for cmdconfig.cli, .logs and .daemon: shared options, exit statuses, log lines."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from twisted.logger import Logger

from cmdconfig import CommandError, Key, Schema
from cmdconfig.cli import make_parser, run
from cmdconfig.logs import make_observer
from tests.helpers import wait_for

SCHEMA = Schema(
    [
        Key("port", "port", "2123", "tcp port"),
        Key("datadir", "path", "/var/demo", "data directory"),
        Key("fssync.password-from", "secret", "", "password file"),
    ]
)
ALIASES = {"--datadir": "datadir", "--password-from": "fssync.password-from"}


def parser(tmp_path):
    def extra(p):
        p.add_argument("-x", dest="x", action="store_true")

    return make_parser("demo", SCHEMA, str(tmp_path / "absent.conf"), extra, aliases=ALIASES)


def run_demo(tmp_path, argv, main=None):
    seen = {}

    def default_main(args, config):
        seen["args"], seen["config"] = args, config
        return 0

    code = run(parser(tmp_path), main or default_main, argv, log=False)
    return code, seen


def test_options_reach_main(tmp_path):
    """-o, aliases, -v and the command's own options arrive in main."""
    code, seen = run_demo(tmp_path, ["-vv", "-x", "-o", "port=99", "--datadir=/d"])
    assert code == 0
    assert seen["config"]["port"] == 99
    assert seen["config"]["datadir"] == "/d"
    assert seen["config"].origin("datadir") == "--datadir"
    assert seen["args"].verbose == 2
    assert seen["args"].x is True


def test_overrides_apply_in_command_line_order(tmp_path):
    """Between -o and an alias for the same key, the later one wins."""
    _, seen = run_demo(tmp_path, ["--datadir", "/a", "-o", "datadir=/b"])
    assert seen["config"]["datadir"] == "/b"
    _, seen = run_demo(tmp_path, ["-o", "datadir=/b", "--datadir", "/a"])
    assert seen["config"]["datadir"] == "/a"
    _, seen = run_demo(tmp_path, ["--password-from=/etc/s:w1"])
    assert seen["config"]["fssync.password-from"] == "/etc/s:w1"


def test_config_file_from_c(tmp_path):
    """-c selects the file, and -o still overrides it."""
    conf = tmp_path / "demo.conf"
    conf.write_text("port = 77\ndatadir = /f\n")
    _, seen = run_demo(tmp_path, ["-c", str(conf), "-o", "datadir=/o"])
    assert (seen["config"]["port"], seen["config"]["datadir"]) == (77, "/o")


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


def test_unknown_key_exit_2_one_line(tmp_path, capsys):
    """An unknown -o key is exit 2 with one line naming it."""
    code, seen = run_demo(tmp_path, ["-o", "prot=1"])
    assert code == 2
    assert "args" not in seen
    assert one_line(capsys) == "demo: -o: unknown key 'prot' (did you mean 'port'?)"


def test_bad_file_value_exit_2_names_file_line(tmp_path, capsys):
    """A bad value in the -c file is exit 2 naming the file:line and key."""
    conf = tmp_path / "demo.conf"
    conf.write_text("# demo\nport = many\n")
    code, _ = run_demo(tmp_path, ["-c", str(conf)])
    assert code == 2
    assert one_line(capsys).startswith(f"demo: {conf}:2: bad value for 'port'")


def test_missing_c_file_exit_2(tmp_path, capsys):
    """A missing file given with -c is exit 2 naming the file."""
    code, _ = run_demo(tmp_path, ["-c", str(tmp_path / "nope.conf")])
    assert code == 2
    assert one_line(capsys).startswith(f"demo: {tmp_path / 'nope.conf'}: cannot read")


@pytest.mark.parametrize("argv", [["--bogus"], ["-o"], ["-o", "novalue"], ["extra-arg"]])
def test_usage_errors_exit_2_one_line(tmp_path, capsys, argv):
    """Usage errors are exit 2 with one line pointing at --help."""
    code, _ = run_demo(tmp_path, argv)
    assert code == 2
    line = one_line(capsys)
    assert line.startswith("demo: ") and line.endswith("(see demo --help)")


def test_help_lists_keys_and_exits_0(tmp_path, capsys):
    """--help exits 0 and lists every key with its default and help."""
    code, _ = run_demo(tmp_path, ["--help"])
    assert code == 0
    out = capsys.readouterr().out
    for key in SCHEMA:
        assert f"{key.name} = {key.describe_default()}" in out
        assert key.help in out
    assert "--datadir" in out and "--pidfile" in out and "-c FILE" in out


def test_failures_map_to_exit_1(tmp_path, capsys):
    """CommandError and OSError are exit 1 with one line; a bug adds a traceback."""

    def command_error(args, config):
        raise CommandError("cannot lock /d/sn: is another fs_mirror running?")

    def os_error(args, config):
        open(tmp_path / "missing" / "file")  # noqa: SIM115

    def bug(args, config):
        raise RuntimeError("boom")

    assert run_demo(tmp_path, [], command_error)[0] == 1
    assert one_line(capsys) == "demo: cannot lock /d/sn: is another fs_mirror running?"
    assert run_demo(tmp_path, [], os_error)[0] == 1
    assert one_line(capsys).endswith("missing/file: No such file or directory")
    assert run_demo(tmp_path, [], bug)[0] == 1
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "internal error" in err


def test_interrupt_and_exit_codes(tmp_path):
    """Ctrl-C is a clean stop (0); main's own status is returned."""

    def interrupted(args, config):
        raise KeyboardInterrupt

    assert run_demo(tmp_path, [], interrupted)[0] == 0
    assert run_demo(tmp_path, [], lambda a, c: 3)[0] == 3
    assert run_demo(tmp_path, [], lambda a, c: None)[0] == 0


def test_log_line_format():
    """Log lines read 'YYYY-MM-DDTHH:MM:SS [prog] message'; -v shows debug."""
    quiet, loud = io.StringIO(), io.StringIO()
    for stream, verbosity in ((quiet, 0), (loud, 1)):
        log = Logger(namespace="x", observer=make_observer(verbosity, stream, "mirrord"))
        log.info("boot init finished on port {port}", port=2123)
        log.debug("detail {n}", n=1)
        log.warn("watch limit {n}", n=8192)
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \[mirrord\] "
    lines = quiet.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(pattern + "boot init finished on port 2123", lines[0])
    assert re.fullmatch(pattern + "warning: watch limit 8192", lines[1])
    assert "detail 1" in loud.getvalue()


def test_log_failure_has_traceback():
    """A logged failure carries its traceback."""
    stream = io.StringIO()
    log = Logger(observer=make_observer(0, stream, "fs_mirror"))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("apply failed")
    text = stream.getvalue()
    assert "[fs_mirror] critical: apply failed" in text
    assert text.endswith("division by zero\n")
    assert "ZeroDivisionError" in text


DEMO = textwrap.dedent(
    """
    import signal, sys
    from twisted.logger import Logger
    from cmdconfig import Key, Schema
    from cmdconfig.cli import make_parser, run

    SCHEMA = Schema([Key("port", "port", "2123", "tcp port")])

    def main(args, config):
        Logger().info("serving on {port}", port=config["port"])
        Logger().debug("debug line")
        if args.wait:
            signal.pause()
        return 0

    p = make_parser("demo", SCHEMA, None, lambda p: p.add_argument("--wait", action="store_true"))
    sys.exit(run(p, main, sys.argv[1:]))
    """
)


def demo(*argv: str, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-c", DEMO, *argv], stdout=subprocess.PIPE, text=True, **kwargs
    )


def test_logging_goes_to_stderr_in_a_real_process():
    """A real command logs through twisted.logger to stderr; -v adds debug."""
    out, err = demo("-o", "port=99").communicate(timeout=30)
    assert re.search(r"T\d\d:\d\d:\d\d \[demo\] serving on 99\n", err)
    assert "debug line" not in err and out == ""
    _, err = demo("-v").communicate(timeout=30)
    assert "[demo] debug line" in err


def test_sigterm_is_a_clean_stop(tmp_path):
    """SIGTERM stops a foreground command with exit 0 and removes its pidfile."""
    pidfile = tmp_path / "demo.pid"
    proc = demo("--wait", "--pidfile", str(pidfile))
    try:
        wait_for(pidfile.exists, message="pidfile")
        assert int(pidfile.read_text()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not pidfile.exists()
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_while_logging_is_still_a_clean_stop(tmp_path):
    """SIGTERM as the command starts (often inside Twisted's logging, which swallows
    SystemExit) still stops it with exit 0: 20 tries, each signalled the moment it runs."""
    for attempt in range(20):
        pidfile = tmp_path / f"demo{attempt}.pid"
        proc = demo("--wait", "--pidfile", str(pidfile), stderr=subprocess.DEVNULL)
        try:
            wait_for(pidfile.exists, interval=0.0, message="pidfile")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, f"attempt {attempt}"
        finally:
            proc.kill()
            proc.wait()


def test_daemon_detaches_and_writes_pidfile(tmp_path):
    """--daemon returns 0 once the detached process has written its pidfile."""
    pidfile = tmp_path / "demo.pid"
    log = tmp_path / "log"
    with open(log, "w") as err:
        code = subprocess.run(
            [sys.executable, "-c", DEMO, "--wait", "--daemon", "--pidfile", str(pidfile)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            timeout=30,
        ).returncode
    assert code == 0
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)  # the detached process is alive
        assert not list(tmp_path.glob("*.tmp"))
        wait_for(lambda: "serving on 2123" in log.read_text(), message="daemon log line")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), message="pidfile removed at exit")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_daemon_refuses_a_live_pidfile(tmp_path):
    """--daemon refuses to start when the pidfile names a running process (exit 1)."""
    pidfile = tmp_path / "demo.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    proc = demo("--daemon", "--pidfile", str(pidfile))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"already running as pid {os.getpid()}" in err
    assert pidfile.read_text() == f"{os.getpid()}\n"


REACT_DEMO = textwrap.dedent(
    """
    import sys
    from twisted.internet import defer
    from twisted.logger import Logger
    from cmdconfig import CommandError, ConfigError, Key, Schema
    from cmdconfig.cli import make_parser, react

    SCHEMA = Schema([Key("port", "port", "2123", "tcp port")])

    def serve(reactor, args, config):
        how = args.how
        if how == "config":
            return defer.fail(ConfigError("-o port: no good"))
        if how == "command":
            d = defer.Deferred()
            reactor.callLater(0, d.errback, CommandError("cannot do it: try again"))
            return d
        if how == "status":
            return 3
        if how == "bug":
            raise RuntimeError("boom")
        Logger().info("serving on {port}", port=config["port"])
        return defer.Deferred()  # until SIGTERM

    p = make_parser("demo", SCHEMA, None, lambda p: p.add_argument("how"))
    react(p, serve, sys.argv[1:])
    """
)


@pytest.mark.parametrize(
    "how, status, said",
    [
        ("config", 2, "demo: -o port: no good\n"),
        ("command", 1, "demo: cannot do it: try again\n"),
        ("status", 3, ""),
    ],
)
def test_react_maps_how_serve_ended_to_the_exit_status(how, status, said):
    """Under react a failed Deferred gets the same status and one line as under run."""
    done = subprocess.run(
        [sys.executable, "-c", REACT_DEMO, how], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stderr) == (status, said)


def test_react_bug_has_a_traceback_and_exit_1():
    """An exception nobody expected in serve: its traceback, the internal-error line, exit 1."""
    done = subprocess.run(
        [sys.executable, "-c", REACT_DEMO, "bug"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr
    assert done.stderr.endswith("demo: internal error (traceback above); please report it\n")


def test_react_usage_error_is_exit_2_before_the_reactor():
    """A bad option under react: exit 2, one line pointing at --help."""
    done = subprocess.run(
        [sys.executable, "-c", REACT_DEMO, "serve", "--bogus"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("demo: ") and done.stderr.endswith("(see demo --help)\n")


def test_react_sigterm_is_a_clean_stop():
    """SIGTERM while serving in the reactor stops the command with exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-c", REACT_DEMO, "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "serving on 2123" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
