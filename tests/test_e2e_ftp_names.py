"""End to end through the `ftp` backend: the real mirrord serving its embedded FTP
service (`-o ftp.port=N`) and the real fs_mirror with `fssync.type=ftp`, on names
that are hard to carry."""

from __future__ import annotations

import os
from pathlib import Path

from tests.daemons import Proc, Worker, assert_clean_output, mirror_of, start_fs_mirror, tree_diff
from tests.helpers import free_port, wait_for
from tests.test_fs_sync_ftp import NASTY_NAMES

NEWLINE_NAME = b"new\nline"


def _wait_converged_but(src: Path, datadir: Path, uncarried: set[str]) -> None:
    """Wait until the mirror equals the worker except for names FTP cannot carry."""
    last: list[str] = []

    def same() -> bool:
        nonlocal last
        try:
            diff = tree_diff(src, mirror_of(datadir, src))
        except (FileNotFoundError, NotADirectoryError) as exc:
            diff = [str(exc)]
        last = [d for d in diff if d not in {f"missing in mirror: {u}" for u in uncarried}]
        return not last

    try:
        wait_for(same, 60, 0.05, "mirror to converge")
    except AssertionError:
        raise AssertionError("mirror differs:\n" + "\n".join(last[:30])) from None


def _write_names(directory: Path, tag: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in [*NASTY_NAMES, NEWLINE_NAME]:
        with open(os.path.join(os.fsencode(directory), name), "wb") as f:
            f.write(tag + b": " + name)


def test_ftp_backend_converges_on_hard_names(tmp_path: Path) -> None:
    """INIT and live changes with UTF-8, invalid UTF-8, spaces, #, ', $, %, *, [ and a
    leading dash converge through mirrord's own FTP service; the name with a newline
    is reported as one FTP cannot carry, and neither daemon logs an error."""
    src = tmp_path / "srv"
    _write_names(src / "initial", b"init")
    secrets = tmp_path / "secrets"
    secrets.write_text("ftp ftp-pass-1\n")
    os.chmod(secrets, 0o600)
    ftp_port = free_port()
    worker = Worker(
        tmp_path / "mirrord",
        [src],
        options=["-o", f"ftp.port={ftp_port}", "-o", f"ftp.password-from={secrets}:ftp"],
    )
    worker.start()
    backup = tmp_path / "backup"
    client: Proc | None = None
    uncarried = {os.fsdecode(os.path.join(b"initial", NEWLINE_NAME))}
    try:
        client = start_fs_mirror(
            worker, backup,
            "-o", f"fssync.port={ftp_port}", "-o", "fssync.user=mirror",
            f"--password-from={secrets}:ftp",
            kind="ftp",
        )  # fmt: skip
        client.wait_line("init finished", 60)
        _wait_converged_but(src, backup, uncarried)
        _write_names(src / "live", b"live")
        for name in NASTY_NAMES[:5]:  # rewrite some in place
            with open(os.path.join(os.fsencode(src / "initial"), name), "wb") as f:
                f.write(b"changed " + name)
        uncarried.add(os.fsdecode(os.path.join(b"live", NEWLINE_NAME)))
        _wait_converged_but(src, backup, uncarried)
        assert client.count("cannot be carried by this backend") == 2, client.output()
        assert client.count("FTP cannot carry") == 2
    finally:
        if client is not None:
            client.stop()
        worker.stop()
    assert_clean_output(worker.proc)  # type: ignore[arg-type]
    assert_clean_output(client)
