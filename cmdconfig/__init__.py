"""Shared command-line and configuration code for mirrord, fs_mirror and fs_info.

Strict ``key = value`` files, ``-o`` overrides, secrets files, logging,
``--daemon`` and exit statuses, in one small package so the three commands
behave alike.
"""

from cmdconfig.errors import CommandError, ConfigError, UsageError
from cmdconfig.loader import Config, load
from cmdconfig.schema import REQUIRED, Key, Schema
from cmdconfig.secrets import read_secret

__all__ = [
    "REQUIRED",
    "CommandError",
    "Config",
    "ConfigError",
    "Key",
    "Schema",
    "UsageError",
    "load",
    "read_secret",
]
