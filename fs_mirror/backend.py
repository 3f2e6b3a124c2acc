"""fs_mirror's configuration as the spec of an fs_sync backend.

fs_sync knows neither fs_mirror's keys nor its folders: this module reads
``fssync.*`` and ``host`` and chooses where the backend may put files of its
own, below fs_mirror's staging directory (``DATADIR/.fs_mirror.d``, see
``fs_mirror.state``), which lies outside the mirrored tree and is emptied of
what a killed run left there before each start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from fs_sync.registry import KINDS, BackendSpec

REPORT = "report"  # fssync.type of report mode: no backend, nothing fetched


def scratch_dirs(staging: bytes) -> tuple[bytes, bytes]:
    """``(rsync staging, temporary files)`` below ``staging``, emptied of what a kill -9 left.

    The temporary directory exists afterwards (0700); rsync makes its own.
    """
    rsync, tmpdir = os.path.join(staging, b"rsync"), os.path.join(staging, b"tmp")
    for scratch in (rsync, tmpdir):
        shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(tmpdir, mode=0o700)
    return rsync, tmpdir


def backend_spec(
    config: Mapping[str, Any],
    password: bytes | None,
    *,
    rsync_staging: bytes,
    tmpdir: bytes,
    kind: str | None = None,
) -> BackendSpec | None:
    """The backend ``fssync.type`` names; None for ``report`` (not a fetcher).

    fs_mirror makes each batch durable at once (``fs_mirror.apply.make_durable``),
    so the backend does not fsync file by file.  Raises ValueError naming the
    key for an unknown type.
    """
    kind = kind or config.get("fssync.type")  # report.hash passes report.fetch's
    if kind == REPORT:
        return None
    if kind not in KINDS:
        raise ValueError(
            f"fssync.type: unknown backend {kind!r} (one of {', '.join((*KINDS, REPORT))})"
        )
    return BackendSpec(
        kind=kind,
        root=os.fsencode(config.get("fssync.root") or ""),
        host=config.get("host") or "",
        port=int(config.get("fssync.port") or 0),
        user=config.get("fssync.user") or None,
        password=password,
        staging_dir=rsync_staging,
        tmpdir=tmpdir,
        fsync=False,
    )
