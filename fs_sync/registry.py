"""A backend spec to a fetcher: the only place that knows which class serves which kind.

The client (fs_mirror) says what it wants in fs_sync's own terms, a small
frozen ``BackendSpec``; fs_sync reads no configuration mapping and knows no
key names or folder names of its callers.  The backends themselves take
plain arguments so that each can be built and tested without a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fs_sync.interface import Fetcher

KINDS = ("ftp", "rsync", "local")
DEFAULT_PORTS = {"ftp": 21, "rsync": 873}


@dataclass(frozen=True)
class BackendSpec:
    """Everything a backend is built from; invalid combinations raise ValueError.

    ``root`` is where the worker's ``/`` is found (FTP directory, rsync
    module path, local mount); ``port`` 0 means the backend's default.
    ``staging_dir`` (rsync only, required) is a directory of the caller's on
    the mirror's file system where rsync puts whole files before they are
    renamed into place; ``tmpdir`` is where ``local`` and ``ftp`` write their
    temporary files (see ``fs_sync.atomic``).  ``fsync=False`` means the
    caller makes each batch durable itself.
    """

    kind: str
    root: bytes = b""
    host: str = ""
    port: int = 0
    user: str | None = None
    password: bytes | None = None
    staging_dir: bytes | None = None
    tmpdir: bytes | None = None
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown backend {self.kind!r} (one of {', '.join(KINDS)})")
        if self.kind == "rsync" and not self.staging_dir:
            raise ValueError("the rsync backend needs a staging directory")


def make_fetcher(spec: BackendSpec, reactor: Any) -> Fetcher:
    """The fetcher ``spec`` describes (not yet connected: backends connect on first use)."""
    root = spec.root.rstrip(b"/")
    port = spec.port or DEFAULT_PORTS.get(spec.kind, 0)
    if spec.kind == "local":
        from fs_sync.local import LocalFetcher

        return LocalFetcher(root, reactor, tmpdir=spec.tmpdir, fsync=spec.fsync)
    if spec.kind == "ftp":
        from fs_sync.ftp import FtpFetcher

        return FtpFetcher(
            spec.host,
            port,
            spec.user or "anonymous",
            spec.password,
            root,
            reactor,
            tmpdir=spec.tmpdir,
            fsync=spec.fsync,
        )
    from fs_sync.rsync import RsyncFetcher

    assert spec.staging_dir is not None  # __post_init__ refused an rsync spec without one
    return RsyncFetcher(
        spec.host,
        port,
        spec.user,
        spec.password,
        root,
        spec.staging_dir,
        reactor,
        fsync=spec.fsync,
    )
