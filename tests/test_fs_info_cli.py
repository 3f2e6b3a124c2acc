"""Tests for the fs_info command, run as a real subprocess (.venv/bin/fs_info)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmdconfig import ConfigError
from fs_info.cli import Identity, plan_add, plan_remove

FS_INFO = Path(sys.executable).parent / "fs_info"


class Result:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.code = proc.returncode
        self.out: bytes = proc.stdout
        self.err: str = proc.stderr.decode(errors="replace")


@pytest.fixture
def env(tmp_path):
    """A datadir and a tree to name, and a runner bound to that datadir."""
    datadir = tmp_path / "data"
    tree = tmp_path / "tree"
    for d in ("www/html", "www/cache", "www/cache2", "etc"):
        (tree / d).mkdir(parents=True)

    def fs_info(*args: str | bytes) -> Result:
        argv = [str(FS_INFO), "-o", f"datadir={datadir}", *args]
        return Result(subprocess.run(argv, capture_output=True, timeout=30))

    fs_info.datadir = datadir
    fs_info.tree = tree
    return fs_info


def t_files(env, name="system") -> bytes:
    return (env.datadir / name / ".t_files").read_bytes()


def x_files(env, name="system") -> bytes:
    return (env.datadir / name / ".x_files").read_bytes()


def test_add_and_list(env):
    """-a t: and x: write the list files; -l prints t:/x: lines."""
    www = f"{env.tree}/www"
    r = env("-a", f"t:{www}/", "-a", f"x:{www}/cache")
    assert (r.code, r.err) == (0, "")
    assert t_files(env) == f"{www}\n".encode()
    assert x_files(env) == f"{www}/cache\n".encode()
    r = env("-l")
    assert r.code == 0
    assert r.out == f"t:{www}\nx:{www}/cache\n".encode()


def test_named_identity(env):
    """A positional IDENTITY selects DATADIR/IDENTITY; -l shows only that one."""
    assert env("-a", f"t:{env.tree}/etc", "cfg").code == 0
    assert t_files(env, "cfg") == f"{env.tree}/etc\n".encode()
    assert not (env.datadir / "system").exists()
    assert env("-l", "cfg").out == f"t:{env.tree}/etc\n".encode()


def error(result: Result, code: int = 2) -> str:
    assert result.code == code, result.err
    assert result.err.count("\n") == 1, result.err
    return result.err.rstrip("\n")


def test_relative_path_refused_and_nothing_written(env):
    """A relative path is exit 2, and the valid entries before it are not written."""
    r = env("-a", f"t:{env.tree}/etc", "-a", "t:www/html")
    assert error(r) == "fs_info: t:www/html: path must be absolute and contain no newline"
    assert not (env.datadir / "system").exists()


def test_missing_include_refused(env):
    """An include that does not exist is exit 2 naming it."""
    r = env("-a", f"t:{env.tree}/nope")
    assert (
        error(r) == f"fs_info: t:{env.tree}/nope: no such file or directory (an include must exist)"
    )
    assert not (env.datadir / "system").exists()


def test_missing_exclude_warns(env):
    """An exclude that does not exist yet is stored, with a warning."""
    r = env("-a", f"t:{env.tree}/www", "-a", f"x:{env.tree}/www/later")
    assert r.code == 0
    assert "warning" in r.err and "www/later" in r.err
    assert x_files(env) == f"{env.tree}/www/later\n".encode()


def test_exclude_outside_includes_refused(env):
    """An exclude outside every include is exit 2; /a/cache2 is not inside /a/cache."""
    assert env("-a", f"t:{env.tree}/www/cache").code == 0
    r = env("-a", f"x:{env.tree}/www/cache2")
    assert error(r) == (
        f"fs_info: x:{env.tree}/www/cache2: exclude is not inside any include of identity 'system'"
    )
    assert x_files(env) == b""


def test_duplicates_refused(env):
    """Adding an entry already listed, or twice at once, is exit 2."""
    etc = f"{env.tree}/etc"
    assert env("-a", f"t:{etc}").code == 0
    assert (
        error(env("-a", f"t:{etc}/")) == f"fs_info: t:{etc}/: already listed in identity 'system'"
    )
    www = f"{env.tree}/www"
    r = env("-a", f"t:{www}", "-a", f"t:{www}")
    assert error(r) == f"fs_info: t:{www}: already listed (also t:{www})"
    assert t_files(env) == f"{etc}\n".encode()


def test_remove(env):
    """-r removes a listed entry; removing what is not listed is exit 2."""
    www = f"{env.tree}/www"
    assert env("-a", f"t:{www}", "-a", f"x:{www}/cache", "-a", f"t:{env.tree}/etc").code == 0
    assert env("-r", f"x:{www}/cache").code == 0
    assert x_files(env) == b""
    assert error(env("-r", f"x:{www}/cache")) == (
        f"fs_info: x:{www}/cache: not listed in identity 'system'"
    )
    assert env("-r", f"t:{www}").code == 0
    assert t_files(env) == f"{env.tree}/etc\n".encode()


def test_remove_that_orphans_an_exclude_refused(env):
    """Removing the include around an exclude is refused; nothing changes."""
    www = f"{env.tree}/www"
    assert env("-a", f"t:{www}", "-a", f"x:{www}/cache").code == 0
    message = error(env("-r", f"t:{www}"))
    assert f"x:{www}/cache would be outside every include" in message
    assert t_files(env) == f"{www}\n".encode()


def test_list_files(env, tmp_path):
    """tL:/xL: read one path a line, skipping blank lines and # comments."""
    includes = tmp_path / "inc.list"
    includes.write_text(f"# web\n\n{env.tree}/www\n  {env.tree}/etc  \n")
    excludes = tmp_path / "exc.list"
    excludes.write_text(f"{env.tree}/www/cache\n")
    assert env("-a", f"tL:{includes}", "-a", f"xL:{excludes}").code == 0
    assert t_files(env) == f"{env.tree}/etc\n{env.tree}/www\n".encode()
    assert x_files(env) == f"{env.tree}/www/cache\n".encode()


def test_list_file_errors_name_file_and_line(env, tmp_path):
    """A bad line in a list file names the file:line; a missing list file is named."""
    bad = tmp_path / "bad.list"
    bad.write_text(f"{env.tree}/www\nrelative/x\n")
    assert error(env("-a", f"tL:{bad}")).startswith(f"fs_info: {bad}:2: t:relative/x: path must")
    assert not (env.datadir / "system").exists()
    assert "cannot read list file" in error(env("-a", f"tL:{tmp_path}/none"))


def test_non_utf8_paths(env):
    """A name that is not UTF-8 is stored and listed byte for byte."""
    raw = os.fsencode(env.tree) + b"/\xff\xfe"
    os.mkdir(raw)
    assert env(b"-a", b"t:" + raw).code == 0
    assert t_files(env) == raw + b"\n"
    assert env("-l").out == b"t:" + raw + b"\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-a", "q:/x"], "bad entry 'q:/x'"),
        (["-r", "tL:/x"], "bad entry 'tL:/x'"),
        ([], "nothing to do"),
        (["-l", "../etc"], "bad identity name '../etc'"),
        (["-l", "-a", "t:/"], "not allowed with argument"),
    ],
)
def test_usage_errors(env, args, message):
    """Bad entries, bad identity names and conflicting actions are exit 2."""
    assert message in error(env(*args))


def test_list_unknown_identity(env):
    """-l of an identity that does not exist is exit 2 naming it."""
    assert "no identity 'ghost'" in error(env("-l", "ghost"))


def test_config_file_and_bad_key(env, tmp_path):
    """datadir comes from -c FILE; a bad key names the file:line; a missing -c file fails."""
    conf = tmp_path / "fs_info.conf"
    conf.write_text(f"# test\ndatadir = {tmp_path}/other\n")
    argv = [str(FS_INFO), "-c", str(conf), "-a", f"t:{env.tree}/etc"]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    assert (tmp_path / "other" / "system" / ".t_files").exists()
    conf.write_text("datadri = /x\n")
    r = Result(subprocess.run([*argv[:3], "-l"], capture_output=True, timeout=30))
    assert error(r) == f"fs_info: {conf}:1: unknown key 'datadri' (did you mean 'datadir'?)"
    r = Result(
        subprocess.run(
            [str(FS_INFO), "-c", f"{tmp_path}/no.conf", "-l"], capture_output=True, timeout=30
        )
    )
    assert error(r).startswith(f"fs_info: {tmp_path}/no.conf: cannot read configuration file")


def test_unwritable_datadir_is_exit_1(env, tmp_path):
    """A datadir that cannot be created is exit 1 with a message, not a traceback."""
    (tmp_path / "file").write_text("")
    argv = [str(FS_INFO), "-o", f"datadir={tmp_path}/file/data", "-a", f"t:{env.tree}/etc"]
    r = Result(subprocess.run(argv, capture_output=True, timeout=30))
    assert "Not a directory" in error(r, code=1)


def test_plans_are_pure():
    """plan_add/plan_remove compute the new identity without touching the disk."""
    ident = plan_add(Identity(), [("t", b"/a", "t:/a"), ("x", b"/a/b", "x:/a/b")], "s")
    assert ident == Identity([b"/a"], [b"/a/b"])
    with pytest.raises(ConfigError, match="opposite kind"):
        plan_add(ident, [("t", b"/a/b", "t:/a/b")], "s")
    assert plan_remove(ident, [("x", b"/a/b", "x:/a/b")], "s") == Identity([b"/a"])
