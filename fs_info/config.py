"""fs_info's configuration keys (documented for operators in etc/fs_info.conf)."""

from __future__ import annotations

from cmdconfig import Key, Schema

DEFAULT_FILE = "/etc/fs_info.conf"

SCHEMA = Schema(
    [
        Key(
            "datadir",
            "path",
            "/var/mirrord",
            "directory holding the identities (IDENTITY/.t_files and .x_files); "
            "the same as mirrord's datadir",
        ),
    ]
)
