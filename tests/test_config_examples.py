"""The documented etc/*.conf examples load with the real loader and document every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cmdconfig import load
from fs_info.config import SCHEMA as FS_INFO
from fs_mirror.config import SCHEMA as FS_MIRROR
from mirrord.config import SCHEMA as MIRRORD

ETC = Path(__file__).resolve().parent.parent / "etc"
EXAMPLES = [("mirrord.conf", MIRRORD), ("fs_mirror.conf", FS_MIRROR), ("fs_info.conf", FS_INFO)]


@pytest.mark.parametrize("name, schema", EXAMPLES)
def test_example_loads(name, schema):
    """Each example is a valid configuration for its command."""
    config = load(schema, str(ETC / name), required_file=True)
    assert config.path == str(ETC / name)
    assert set(config) == set(schema.names())


@pytest.mark.parametrize("name, schema", EXAMPLES)
def test_example_documents_every_key(name, schema):
    """Every key appears, commented, with its default and its help text."""
    text = (ETC / name).read_text()
    flat = " ".join(line.lstrip("# ") for line in text.splitlines())
    for key in schema:
        default = key.default or ""
        assert re.search(rf"^#{re.escape(key.name)} =( {re.escape(default)})?$", text, re.M), key
        assert " ".join(key.help.split()) in flat, key.name


def test_fs_mirror_example_values():
    """The fs_mirror example fills the required keys with example values."""
    config = load(FS_MIRROR, str(ETC / "fs_mirror.conf"), required_file=True)
    assert config["host"] == "worker01.example.com"
    assert config["fssync.type"] in ("ftp", "rsync", "local", "report")
    assert config["datadir"].startswith("/")
