"""Configuration keys to a fetch backend: the only place that knows the names.

fs_mirror passes its config mapping; the backends themselves take plain
arguments so that each can be built and tested without a config object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fs_sync.interface import Fetcher

TYPES = ("ftp", "rsync", "local", "report")
DEFAULT_PORTS = {"ftp": 21, "rsync": 873}
STAGING_NAME = b".fs_mirror-staging"


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return os.fsencode(value)


def make_fetcher(
    config: Mapping[str, Any],
    reactor: Any,
    password: bytes | None = None,
    *,
    staging_dir: bytes | None = None,
    tmpdir: bytes | None = None,
    fsync: bool = True,
) -> Fetcher | None:
    """The backend named by `fssync.type`; None for `report` (not a fetcher).

    `rsync` stages files on the mirror's filesystem: `staging_dir`, else
    `<datadir>/.fs_mirror-staging` when the config has `datadir`. `local`
    and `ftp` write their temporary files in `tmpdir` when given (see
    fs_sync.atomic).
    Raises ValueError naming the key for an unknown type or missing setting.
    """
    kind = config.get("fssync.type")
    root = _bytes(config.get("fssync.root")).rstrip(b"/")
    user = config.get("fssync.user") or None
    port = config.get("fssync.port") or DEFAULT_PORTS.get(str(kind), 0)
    host = config.get("host") or ""
    if kind == "report":
        return None
    if kind == "local":
        from fs_sync.local import LocalFetcher

        return LocalFetcher(root, reactor, tmpdir=tmpdir, fsync=fsync)
    if kind == "ftp":
        from fs_sync.ftp import FtpFetcher

        return FtpFetcher(
            host,
            int(port),
            user or "anonymous",
            password,
            root,
            reactor,
            tmpdir=tmpdir,
            fsync=fsync,
        )
    if kind == "rsync":
        from fs_sync.rsync import RsyncFetcher

        if staging_dir is None:
            datadir = config.get("datadir")
            if not datadir:
                raise ValueError("fssync.type=rsync needs datadir for its staging directory")
            staging_dir = os.path.join(_bytes(datadir), STAGING_NAME)
        return RsyncFetcher(
            host, int(port), user, password, root, staging_dir, reactor, fsync=fsync
        )
    raise ValueError(f"fssync.type: unknown backend {kind!r} (one of {', '.join(TYPES)})")
