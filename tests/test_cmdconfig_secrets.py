"""Tests for cmdconfig.secrets: ID PASSWORD files, refused when others can read them."""

from __future__ import annotations

import os

import pytest

from cmdconfig import ConfigError, Key, Schema, load, read_secret


def secrets_file(tmp_path, text: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "secrets"
    path.write_bytes(text)
    os.chmod(path, mode)
    return str(path)


def test_reads_the_password_for_the_id(tmp_path):
    """The password is the rest of the line after the ID and its whitespace."""
    path = secrets_file(
        tmp_path, b"# comment\n\nother  pw1\nworker01 \t pass word with spaces\r\nlast x\n"
    )
    assert read_secret(f"{path}:worker01") == b"pass word with spaces"
    assert read_secret(f"{path}:other") == b"pw1"
    assert read_secret(f"{path}:last") == b"x"


def test_password_bytes_kept_as_they_are(tmp_path):
    """A password that is not UTF-8 comes back byte for byte."""
    path = secrets_file(tmp_path, b"id \xff\xfe#1\n")
    assert read_secret(f"{path}:id") == b"\xff\xfe#1"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644])
def test_refuses_group_or_world_access(tmp_path, mode):
    """A secrets file readable or writable by group or others is refused, naming it."""
    path = secrets_file(tmp_path, b"id pw\n", mode)
    with pytest.raises(ConfigError) as info:
        read_secret(f"{path}:id")
    assert str(info.value).startswith(f"{path}: secrets file is accessible by group or others")
    assert f"chmod 600 {path}" in str(info.value)


def test_owner_only_modes_are_accepted(tmp_path):
    """Modes 0600 and 0400 are fine."""
    path = secrets_file(tmp_path, b"id pw\n", 0o400)
    assert read_secret(f"{path}:id") == b"pw"


def test_missing_id_names_id_and_file(tmp_path):
    """Asking for an ID the file lacks names both."""
    path = secrets_file(tmp_path, b"worker01 pw\n")
    with pytest.raises(ConfigError, match=rf"^{path}: no secret with id 'worker02'$"):
        read_secret(f"{path}:worker02")


def test_id_without_password(tmp_path):
    """An ID line with no password is an error, not an empty secret."""
    path = secrets_file(tmp_path, b"worker01\n")
    with pytest.raises(ConfigError, match="empty password for id 'worker01'"):
        read_secret(f"{path}:worker01")


def test_missing_file_and_bad_spec(tmp_path):
    """A missing file is named; a spec without ':ID' is refused."""
    missing = tmp_path / "none"
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot read secrets file"):
        read_secret(f"{missing}:id")
    with pytest.raises(ConfigError, match="expected FILE:ID"):
        read_secret("no-id-here")


def test_file_with_colon_in_its_name(tmp_path):
    """The ID is after the last colon, so a file name may contain colons."""
    path = tmp_path / "a:b"
    path.write_bytes(b"id pw\n")
    os.chmod(path, 0o600)
    assert read_secret(f"{path}:id") == b"pw"


def test_config_secret_names_the_key(tmp_path):
    """Config.secret reads the key's secret, and an error names the key and its origin."""
    schema = Schema([Key("auth.secret-from", "secret", "", "secret")])
    good = secrets_file(tmp_path, b"id pw\n")
    assert load(schema, None, [f"auth.secret-from={good}:id"]).secret("auth.secret-from") == b"pw"
    assert load(schema, None).secret("auth.secret-from") is None
    os.chmod(good, 0o644)
    with pytest.raises(ConfigError) as info:
        load(schema, None, [f"auth.secret-from={good}:id"]).secret("auth.secret-from")
    assert str(info.value).startswith(f"-o: auth.secret-from: {good}: secrets file is accessible")
