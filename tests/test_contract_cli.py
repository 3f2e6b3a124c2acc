"""The contract's command lines, config files and files on disk, run from outside.

Each test runs the installed commands as subprocesses, the way an outside
conformance test or an operator does, and checks what sections 3-5 of the
contract promise about options and configuration: exit statuses, one-line
messages naming the bad key or file, default config files, fs_info's forms.
Daemons at work (daemon mode, fs_mirror, the wire) are in
test_contract_cli_e2e.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from fs_info.config import SCHEMA as FS_INFO_SCHEMA
from fs_mirror.config import SCHEMA as FS_MIRROR_SCHEMA
from mirrord.config import SCHEMA as MIRRORD_SCHEMA
from tests.daemons import Proc, Worker, command
from tests.helpers import free_port, wait_for


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def one_line_error(done: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """Assert ``status``, exactly one stderr line, no traceback, and each word in it."""
    assert done.returncode == status, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)
    return done.stderr


# -- section 3: shared options ---------------------------------------------


@pytest.mark.parametrize("name", ["mirrord", "fs_mirror", "fs_info"])
def test_version_prints_name_and_version(name: str) -> None:
    """Contract 6: ``--version`` prints ``NAME VERSION`` (the installed one) and exits 0."""
    done = run(name, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name} {importlib.metadata.version('mirrord')}\n"


@pytest.mark.parametrize(
    "name, schema",
    [("fs_info", FS_INFO_SCHEMA), ("mirrord", MIRRORD_SCHEMA), ("fs_mirror", FS_MIRROR_SCHEMA)],
)
def test_help_lists_every_key_with_its_default(name, schema):
    """--help exits 0 and shows -v, -c, -o, --daemon, --pidfile and each key = default."""
    done = run(name, "--help")
    assert done.returncode == 0, done.stderr
    for option in ("-v", "-c FILE", "-o KEY=VALUE", "--daemon", "--pidfile"):
        assert option in done.stdout
    for key in schema:
        assert f"  {key.name} = {key.describe_default()}\n" in done.stdout


@pytest.mark.parametrize("name", ["fs_info", "mirrord", "fs_mirror"])
def test_c_missing_file_is_exit_2_naming_it(name, tmp_path):
    """-c with a file that does not exist: exit 2, one line naming the file."""
    missing = str(tmp_path / "nope.conf")
    one_line_error(run(name, "-c", missing), 2, missing)


@pytest.mark.parametrize("name", ["fs_info", "mirrord", "fs_mirror"])
def test_unknown_key_in_file_names_file_line_and_key(name, tmp_path):
    """An unknown key in a config file: exit 2, one line with file:line and the key."""
    conf = tmp_path / f"{name}.conf"
    conf.write_text("# comment\n\nfrobnicate = 3\n")
    one_line_error(run(name, "-c", str(conf)), 2, f"{conf}:3", "frobnicate")


@pytest.mark.parametrize(
    "name, setting, key",
    [
        ("mirrord", "port = http", "port"),
        ("mirrord", "batch = 0", "batch"),
        ("fs_mirror", "fssync.type = pigeon", "fssync.type"),
        ("fs_mirror", "tls = maybe", "tls"),
    ],
)
def test_bad_value_in_file_names_key(name, setting, key, tmp_path):
    """A bad value in a config file: exit 2, one line naming file:line and key."""
    conf = tmp_path / "x.conf"
    conf.write_text(f"{setting}\n")
    one_line_error(run(name, "-c", str(conf)), 2, f"{conf}:1", key)


def test_o_overrides_the_file_and_repeats(tmp_path, src):
    """-o beats the -c file, and a later -o beats an earlier one."""
    conf = tmp_path / "fs_info.conf"
    conf.write_text(f"datadir = {tmp_path / 'from-file'}\n")
    done = run(
        "fs_info",
        "-c",
        str(conf),
        "-o",
        f"datadir={tmp_path / 'first'}",
        "-o",
        f"datadir={tmp_path / 'last'}",
        "-a",
        f"t:{src}",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "last" / "system" / ".t_files").read_bytes() == bytes(src) + b"\n"
    assert not (tmp_path / "from-file").exists() and not (tmp_path / "first").exists()


def test_fs_mirror_missing_required_key_is_exit_2(tmp_path):
    """fs_mirror without host: exit 2, one line naming the key 'host'."""
    one_line_error(run("fs_mirror", "-o", "fssync.type=report", f"--datadir={tmp_path}"), 2, "host")


def test_default_fs_info_conf_is_read(tmp_path, src):
    """/etc/fs_info.conf is read when present and no -c is given."""
    etc = Path("/etc/fs_info.conf")
    if etc.exists():
        pytest.skip("/etc/fs_info.conf already exists; not touching it")
    try:
        etc.write_text(f"datadir = {tmp_path / 'dd'}\n")
        assert run("fs_info", "-a", f"t:{src}").returncode == 0
        assert (tmp_path / "dd" / "system" / ".t_files").exists()
        listed = run("fs_info", "-l")
        assert listed.stdout == f"t:{src}\n"
    finally:
        etc.unlink(missing_ok=True)


def test_fs_info_forms_and_files(tmp_path, src):
    """-a t: x: tL: xL: write IDENTITY/.t_files and .x_files one path a line; -l; -r."""
    dd = f"datadir={tmp_path / 'dd'}"
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "tl").write_text(f"{other}\n")
    (tmp_path / "xl").write_text(f"{src / 'sub'}\n")
    assert (
        run("fs_info", "-o", dd, "-a", f"t:{src}", "-a", f"x:{src / 'index.php'}").returncode == 0
    )
    done = run("fs_info", "-o", dd, "-a", f"tL:{tmp_path / 'tl'}", "-a", f"xL:{tmp_path / 'xl'}")
    assert done.returncode == 0, done.stderr
    ident = tmp_path / "dd" / "system"
    assert sorted(ident.joinpath(".t_files").read_text().splitlines()) == sorted(
        [str(src), str(other)]
    )
    assert sorted(ident.joinpath(".x_files").read_text().splitlines()) == sorted(
        [str(src / "index.php"), str(src / "sub")]
    )
    assert run("fs_info", "-o", dd, "-r", f"t:{other}", "system").returncode == 0
    listed = run("fs_info", "-o", dd, "-l")
    assert listed.stdout.splitlines() == [
        f"t:{src}",
        f"x:{src / 'index.php'}",
        f"x:{src / 'sub'}",
    ]


# -- mirrord -----------------------------------------------------------------


def test_mirrord_port_in_use_is_exit_1_saying_what_to_do(tmp_path, src):
    """A taken port: exit 1, no traceback, a message naming the port and the -o port fix."""
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        w = Worker(tmp_path / "w", [src], port=port)
        done = subprocess.run(w.argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert str(port) in last and "-o port=" in last, done.stderr
    finally:
        busy.close()


def test_mirrord_missing_datadir_and_no_roots_are_exit_1(tmp_path):
    """No datadir, or no include roots: exit 1 with a message pointing at fs_info."""
    port = str(free_port())
    missing = run("mirrord", "-o", f"datadir={tmp_path / 'none'}", "-o", f"port={port}")
    one_line_error(missing, 1, str(tmp_path / "none"), "fs_info")
    (tmp_path / "empty").mkdir()
    empty = run("mirrord", "-o", f"datadir={tmp_path / 'empty'}", "-o", f"port={port}")
    assert empty.returncode == 1 and "Traceback" not in empty.stderr
    assert "fs_info" in empty.stderr.strip().splitlines()[-1]


def test_mirrord_bad_list_file_line_is_exit_2_naming_it(tmp_path, src):
    """A hand-edited .x_files with a relative path: exit 2, one line with file:line."""
    w = Worker(tmp_path / "w", [src])
    x_files = tmp_path / "w" / "system" / ".x_files"
    x_files.write_text("relative/path\n")
    one_line_error(run("mirrord", *w.argv[1:]), 2, f"{x_files}:1")


def test_mirrord_newer_database_schema_is_exit_1_without_traceback(tmp_path, src):
    """A database written by a newer mirrord: exit 1, no traceback, the message says to upgrade."""
    from mirrord.store import Store

    w = Worker(tmp_path / "w", [src])
    store = Store(str(tmp_path / "w" / "db"))
    with store.transaction():  # as test_store's test_newer_schema_is_refused writes it
        store._meta.put(b"schema", b"99", txn=store._txn)
    store.close()
    done = run("mirrord", *w.argv[1:])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "schema version 99" in last and "upgrade mirrord" in last, done.stderr


def test_mirrord_unusable_bind_address_is_exit_1(tmp_path, src):
    """A bind address that is not this host's: exit 1, no traceback, pointing at -o bind."""
    w = Worker(tmp_path / "w", [src], bind="192.0.2.1")
    done = run("mirrord", *w.argv[1:])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "-o bind=" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["", "../etc", "a/b", "ok,-bad"])
def test_mirrord_bad_identities_is_exit_2(tmp_path, value):
    """An empty or unsafe identities value: exit 2, one line naming the key."""
    (tmp_path / "dd").mkdir()
    done = run("mirrord", "-o", f"datadir={tmp_path / 'dd'}", "-o", f"identities={value}")
    one_line_error(done, 2, "identities")


def test_mirrord_k_commands(worker, tmp_path):
    """-k status, -k include PATH and -k exclude PATH talk to the running daemon."""
    dd = f"datadir={worker.datadir}"
    extra = tmp_path / "extra"
    extra.mkdir()
    assert run("mirrord", "-o", dd, "-k", "include", str(extra)).returncode == 0
    assert run("mirrord", "-o", dd, "-k", "exclude", str(extra / "x")).returncode == 0
    status = run("mirrord", "-o", dd, "-k", "status")
    assert status.returncode == 0 and str(extra) in status.stdout
    assert f"t:{extra}" in run("fs_info", "-o", dd, "-l").stdout
    one_line_error(run("mirrord", "-o", dd, "-k", "frob"), 2, "-k")


def test_mirrord_k_status_json(worker):
    """-k status --json prints one JSON object with the contract's keys (section 6)."""
    done = run("mirrord", "-o", f"datadir={worker.datadir}", "-k", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    for key in ("session", "head", "oldest", "watches", "polled", "clients", "unreadable"):
        assert key in status, key
    assert len(status["session"]) == 32 and isinstance(status["clients"], list)


# -- fs_mirror ----------------------------------------------------------------


def test_group_readable_secrets_file_refused(tmp_path):
    """--password-from=FILE:ID with a group-readable FILE: exit 2 naming the file."""
    secrets = tmp_path / "secrets"
    secrets.write_text("worker pw\n")
    secrets.chmod(0o640)
    done = run(
        "fs_mirror",
        "-o",
        "host=127.0.0.1",
        "-o",
        "fssync.type=ftp",
        f"--password-from={secrets}:worker",
        f"--datadir={tmp_path / 'mir'}",
    )
    one_line_error(done, 2, str(secrets))


def test_mirrord_bad_secret_or_tls_files_are_exit_2_before_starting(tmp_path, src):
    """A loose secrets file or an unusable tls.cert: exit 2, one line naming the key."""
    w = Worker(tmp_path / "w", [src])
    secrets = tmp_path / "secrets"
    secrets.write_text("mirrord s3cret\n")
    secrets.chmod(0o644)
    done = run("mirrord", *w.argv[1:], "-o", f"auth.secret-from={secrets}:mirrord")
    one_line_error(done, 2, "auth.secret-from", str(secrets))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    done = run("mirrord", *w.argv[1:], "-o", f"tls.cert={junk}", "-o", f"tls.key={junk}")
    one_line_error(done, 2, "tls.cert")
    done = run("mirrord", *w.argv[1:], "-o", f"tls.cert={junk}", "-o", f"tls.key={junk}.gone")
    one_line_error(done, 2, "tls.key", f"{junk}.gone")


def test_fs_mirror_bad_tls_ca_is_exit_2(tmp_path):
    """tls=yes with a tls.ca that is not a PEM certificate: exit 2, one line naming tls.ca."""
    junk = tmp_path / "ca.pem"
    junk.write_text("junk\n")
    done = run(
        "fs_mirror",
        "-o",
        "host=127.0.0.1",
        "-o",
        "fssync.type=report",
        "-o",
        "tls=yes",
        "-o",
        f"tls.ca={junk}",
        f"--datadir={tmp_path / 'mir'}",
    )
    one_line_error(done, 2, "tls.ca")


def test_fs_mirror_makes_its_datadir_private(tmp_path):
    """A new DATADIR is created with mode 0700 (the mirror holds other users' files)."""
    datadir = tmp_path / "new" / "mirror"
    proc = Proc([command("fs_mirror"), "-o", "host=127.0.0.1", "-o", f"port={free_port()}",
                 "-o", "fssync.type=report", f"--datadir={datadir}"])  # fmt: skip
    try:
        wait_for(lambda: (datadir / "sn").exists() or proc.count("no connection"), 20,
                 message="fs_mirror running on its datadir")  # fmt: skip
    finally:
        assert proc.stop() == 0, proc.output()
    assert stat.S_IMODE(datadir.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_fs_mirror_refuses_a_datadir_others_can_enter(tmp_path, mode):
    """A DATADIR granting group or others any access: exit 2, one line naming it."""
    datadir = tmp_path / "mirror"
    datadir.mkdir()
    datadir.chmod(mode)
    done = run("fs_mirror", "-o", "host=127.0.0.1", "-o", "fssync.type=report",
               f"--datadir={datadir}")  # fmt: skip
    one_line_error(done, 2, str(datadir))
    assert "0700" in done.stderr
