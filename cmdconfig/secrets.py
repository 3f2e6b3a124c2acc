"""Passwords and shared secrets live in a separate file, never in the config.

``--password-from=FILE:ID`` (or a ``*-from`` key) names a file of
``ID PASSWORD`` lines; the password is the rest of the line after the first
run of whitespace, so it may contain spaces.  The file is refused when group
or others may read or write it, like ssh refuses a loose private key.
"""

from __future__ import annotations

import os
import stat

from cmdconfig.errors import ConfigError

__all__ = ["read_secret", "split_spec"]


def split_spec(spec: str) -> tuple[str, str]:
    """``"FILE:ID"`` -> ``(FILE, ID)``; the ID is after the last colon."""
    file, sep, ident = spec.rpartition(":")
    if not sep or not file or not ident:
        raise ConfigError(f"{spec!r}: expected FILE:ID")
    return file, ident


def read_secret(spec: str) -> bytes:
    """The secret with the given ID in FILE, as bytes."""
    file, ident = split_spec(spec)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise ConfigError(f"{file}: cannot read secrets file: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{file}: secrets file is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{file}: secrets file is accessible by group or others "
                f"(mode {mode:04o}); run: chmod 600 {file}"
            )
        data = f.read()
    wanted = os.fsencode(ident)
    for line in data.splitlines():
        fields = line.lstrip().split(None, 1)
        if not fields or fields[0].startswith(b"#") or fields[0] != wanted:
            continue
        if len(fields) < 2:
            raise ConfigError(f"{file}: empty password for id {ident!r}")
        return fields[1]
    raise ConfigError(f"{file}: no secret with id {ident!r}")
