"""Tests for cmdconfig.schema and cmdconfig.loader: typed keys, strict files, overrides."""

from __future__ import annotations

import pytest

from cmdconfig import REQUIRED, ConfigError, Key, Schema, load
from cmdconfig.loader import parse_lines
from fs_mirror.config import SCHEMA as FS_MIRROR
from mirrord.config import SCHEMA as MIRRORD

SMALL = Schema(
    [
        Key("port", "port", "2123", "tcp port"),
        Key("host", "str", REQUIRED, "server"),
        Key("fssync.user", "str", "", "user"),
        Key("fssync.type", "choice", "local", "backend", choices=("ftp", "local")),
        Key("tls", "bool", "no", "use tls"),
        Key("identities", "list", "system", "names"),
        Key("timeout", "duration", "3600", "idle", minimum=0),
        Key("batch", "int", "1024", "batch", minimum=1, maximum=100000),
        Key("rotate.at", "time", "", "when"),
        Key("auth.secret-from", "secret", "", "secret"),
        Key("datadir", "path", "/var/mirrord", "dir"),
    ]
)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "test.conf"
    path.write_text(text)
    return str(path)


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    return str(info.value)


def test_parse_lines_skips_comments_and_blanks():
    """Whole-line and trailing ' #' comments and blank lines are not settings."""
    lines = ["# comment", "", "   ", "a = 1", "b=2 # trailing", "  c.d  =  x y  ", "e = x#y"]
    assert list(parse_lines(lines, "f")) == [
        ("a", "1", "f:4"),
        ("b", "2", "f:5"),
        ("c.d", "x y", "f:6"),
        ("e", "x#y", "f:7"),
    ]


@pytest.mark.parametrize("line", ["just words", "= value", "[section]", "two words = 1"])
def test_parse_lines_rejects_non_settings(line):
    """A line that is not 'key = value' is an error naming file:line."""
    with pytest.raises(ConfigError, match=r"^f:2: expected 'key = value'"):
        list(parse_lines(["# ok", line], "f"))


def test_file_values_are_typed(tmp_path):
    """Each kind turns its text into a typed value."""
    path = write(
        tmp_path,
        "host = h1\nport = 9000\ntls = yes\nidentities = a, b ,,c\ntimeout = 5m\n"
        "fssync.type = ftp\nbatch = 7\nrotate.at = 3:05\nauth.secret-from = /etc/s:x\n",
    )
    config = load(SMALL, path)
    assert config["host"] == "h1"
    assert config["port"] == 9000
    assert config["tls"] is True
    assert config["identities"] == ("a", "b", "c")
    assert config["timeout"] == 300.0
    assert config["fssync.type"] == "ftp"
    assert config["batch"] == 7
    assert config["rotate.at"] == "03:05"
    assert config["auth.secret-from"] == "/etc/s:x"
    assert config["datadir"] == "/var/mirrord"
    assert config.path == path
    assert config.origin("port") == f"{path}:2"
    assert config.origin("datadir") == "default"


def test_paths_are_made_absolute(tmp_path, monkeypatch):
    """A relative path is made absolute at load time (--daemon later changes directory)."""
    monkeypatch.chdir(tmp_path)
    config = load(SMALL, None, ["host=h", "datadir=data/../mirror"])
    assert config["datadir"] == str(tmp_path / "mirror")


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    """An unknown key names the file:line and suggests the nearest real key."""
    path = write(tmp_path, "host = h\n\n# c\nprot = 1\n")
    assert error_of(SMALL, path) == f"{path}:4: unknown key 'prot' (did you mean 'port'?)"


def test_unknown_key_without_close_match(tmp_path):
    """Without a near key no suggestion is made, but the key is still named."""
    assert error_of(SMALL, None, ["zzzzzz=1", "host=h"]) == "-o: unknown key 'zzzzzz'"


@pytest.mark.parametrize(
    "setting, reason",
    [
        ("port = 0", "must be at least 1"),
        ("port = 70000", "must be at most 65535"),
        ("port = http", "expected an integer"),
        ("tls = maybe", "expected yes or no"),
        ("fssync.type = scp", "expected one of ftp, local"),
        ("timeout = soon", "expected seconds"),
        ("timeout = -1", "expected seconds"),
        ("batch = 0", "must be at least 1"),
        ("rotate.at = 24:00", "expected HH:MM"),
        ("rotate.at = 3pm", "expected HH:MM"),
        ("auth.secret-from = nocolon", "expected FILE:ID"),
        ("auth.secret-from = file:", "expected FILE:ID"),
    ],
)
def test_bad_value_names_key_and_line(tmp_path, setting, reason):
    """A bad value names the key, the file:line and what was expected."""
    path = write(tmp_path, f"host = h\n{setting}\n")
    key = setting.split(" = ")[0]
    message = error_of(SMALL, path)
    assert message.startswith(f"{path}:2: bad value for '{key}': ")
    assert reason in message


def test_override_wins_over_file(tmp_path):
    """-o overrides the file, the last override wins, and origins say so."""
    path = write(tmp_path, "host = h\nport = 1000\n")
    config = load(SMALL, path, ["port=2000", ("port", "3000", "--port")])
    assert config["port"] == 3000
    assert config.origin("port") == "--port"
    assert load(SMALL, path, ["port = 2000"])["port"] == 2000


def test_bad_override_is_named():
    """A bad -o value says it came from -o and names the key."""
    assert error_of(SMALL, None, ["host=h", "port=x"]).startswith("-o: bad value for 'port'")
    assert error_of(SMALL, None, ["host"]) == "-o host: expected KEY=VALUE"


def test_missing_required_key(tmp_path):
    """A required key without a value is an error naming the key."""
    path = write(tmp_path, "port = 1\n")
    message = error_of(SMALL, path)
    assert "missing required key 'host'" in message
    assert message.startswith(path)
    assert "missing required key 'host'" in error_of(SMALL, None)


def test_a_mode_may_require_fewer_keys(tmp_path):
    """``required`` names the keys without default that must be given; others may be
    absent (and are absent from the Config), but a given value is still checked."""
    config = load(SMALL, None, [], required=())
    assert "host" not in config and config["port"] == 2123
    assert "missing required key 'host'" in error_of(SMALL, None)
    with pytest.raises(ConfigError, match="'port'"):
        load(SMALL, None, ["port=none"], required=())


def test_fs_mirror_status_needs_only_the_datadir(tmp_path):
    """``fs_mirror --status`` loads without host or fssync.type; the daemon still needs them."""
    from fs_mirror.main import PARSER

    args, config = PARSER.load(["--status", f"--datadir={tmp_path}", "-c", "/dev/null"])
    assert args.status and config["datadir"] == str(tmp_path) and "host" not in config
    with pytest.raises(ConfigError, match="'host'"):
        PARSER.load([f"--datadir={tmp_path}", "-c", "/dev/null"])


def test_missing_default_file_is_fine(tmp_path):
    """The default file may be absent: defaults and overrides still apply."""
    config = load(SMALL, str(tmp_path / "absent.conf"), ["host=h"])
    assert config["port"] == 2123
    assert config.path is None


def test_missing_required_file_is_an_error(tmp_path):
    """A file given with -c must exist; the error names it."""
    path = str(tmp_path / "absent.conf")
    message = error_of(SMALL, path, ["host=h"], required_file=True)
    assert message.startswith(f"{path}: cannot read configuration file")


def test_unreadable_file_is_an_error_even_if_optional(tmp_path):
    """A default path that exists but cannot be read (a directory) is an error."""
    message = error_of(SMALL, str(tmp_path), ["host=h"])
    assert message.startswith(f"{tmp_path}: cannot read")


def test_key_twice_in_file(tmp_path):
    """A key set twice in one file is an error naming both lines."""
    path = write(tmp_path, "host = a\nport = 1\nport = 2\n")
    assert error_of(SMALL, path) == f"{path}:3: key 'port' given twice (first at {path}:2)"


def test_config_is_read_only():
    """The loaded config is a mapping that cannot be changed."""
    config = load(SMALL, None, ["host=h"])
    with pytest.raises(TypeError):
        config["port"] = 1  # type: ignore[index]
    assert set(config) == set(SMALL.names())
    assert len(config) == len(SMALL.keys)


@pytest.mark.parametrize("text", ["yes", "true", "on", "1", "YES", "no", "false", "off", "0"])
def test_bool_spellings(text):
    """Booleans accept yes/no, true/false, on/off, 1/0 in any case."""
    value = Key("b", "bool", "no", "").parse(text)
    assert value is (text.lower() in ("yes", "true", "on", "1"))


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("0", 0.0),
        ("0.1", 0.1),
        ("90s", 90.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        (".5", 0.5),
    ],
)
def test_duration_units(text, seconds):
    """Durations are seconds, with optional ms/s/m/h/d units."""
    assert Key("d", "duration", "0", "").parse(text) == pytest.approx(seconds)


def test_schema_refuses_bad_definitions():
    """A bad default, kind or duplicate key fails when the schema is built."""
    with pytest.raises(ValueError):
        Key("port", "port", "0", "")
    with pytest.raises(TypeError):
        Key("x", "float", "1", "")
    with pytest.raises(TypeError):
        Key("x", "choice", "a", "")
    with pytest.raises(TypeError):
        Schema([Key("a", "str", "", ""), Key("a", "str", "", "")])


def test_help_text_lists_every_key():
    """--help text shows every key with its default and help, and aliases."""
    text = FS_MIRROR.help_text({"--datadir": "datadir"})
    for key in FS_MIRROR:
        assert f"  {key.name} = " in text
        assert key.help in text
    assert "host = (required)" in text
    assert "port = 2123" in text
    assert "(also --datadir)" in text


def test_mirrord_tls_needs_both_files():
    """mirrord refuses tls.cert without tls.key (and the reverse), naming the key."""
    message = error_of(MIRRORD, None, ["tls.cert=/c.pem"])
    assert message == "-o: tls.cert: set tls.key as well (TLS needs both or neither)"
    assert "tls.key: set tls.cert" in error_of(MIRRORD, None, ["tls.key=/k.pem"])
    config = load(MIRRORD, None, ["tls.cert=/c.pem", "tls.key=/k.pem"])
    assert config["tls.cert"] == "/c.pem"


def test_mirrord_ftp_needs_password(tmp_path):
    """The embedded FTP server cannot be switched on without a password file."""
    path = write(tmp_path, "ftp.port = 2121\n")
    assert error_of(MIRRORD, path).startswith(f"{path}:1: ftp.port: ")
    config = load(MIRRORD, path, ["ftp.password-from=/etc/s:ftp"])
    assert config["ftp.port"] == 2121


def test_mirrord_defaults():
    """mirrord's defaults are the documented ones."""
    config = load(MIRRORD, None)
    assert config["datadir"] == "/var/mirrord"
    assert config["identities"] == ("system",)
    assert (config["bind"], config["port"], config["batch"]) == ("0.0.0.0", 2123, 1024)
    assert config["move.wait"] == pytest.approx(0.1)
    assert config["ftp.port"] == 0


def test_fs_mirror_required_and_rotation():
    """fs_mirror needs host, datadir and fssync.type; rotate.at needs a backdir."""
    base = ["host=w", "datadir=/d", "fssync.type=local"]
    assert "missing required key 'host'" in error_of(FS_MIRROR, None, base[1:])
    assert "missing required key 'fssync.type'" in error_of(FS_MIRROR, None, base[:2])
    assert "expected one of ftp, rsync, local, report" in error_of(
        FS_MIRROR, None, [*base, "fssync.type=scp"]
    )
    assert error_of(FS_MIRROR, None, [*base, "rotate.at=02:30"]) == (
        "-o: rotate.at: daily rotation needs rotate.backdir"
    )
    config = load(FS_MIRROR, None, [*base, "rotate.at=02:30", "rotate.backdir=/b"])
    assert config["rotate.at"] == "02:30"
    assert config["tls"] is False
