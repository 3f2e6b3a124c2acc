"""etc/rsyncd.conf, the guide's worker configuration, serves fs_mirror's rsync backend.

The shipped file runs under a real `rsync --daemon` with only its host-specific
lines (pid file, log file, secrets file, port, address) pointed at a scratch
directory; the module, its options and its authentication are used as written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fs_sync.interface import BackendUnavailable, FetchItem, Outcome
from fs_sync.rsync import RsyncFetcher
from tests.fetcher_contract import private_reactor, run_deferred
from tests.helpers import free_port, wait_for

SAMPLE = Path(__file__).resolve().parent.parent / "etc" / "rsyncd.conf"
USER, PASSWORD = "backup", b"guide-s3cret"

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


def _set(text: str, key: str, value: str) -> str:
    """Replace the (possibly commented) line of ``key``, keeping its indentation."""
    pattern = re.compile(rf"^(\s*)#?{re.escape(key)} = .*$", re.M)
    assert pattern.search(text), f"etc/rsyncd.conf has no {key!r} line"
    return pattern.sub(lambda m: f"{m.group(1)}{key} = {value}", text, count=1)


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def sample_daemon(base: Path) -> Iterator[int]:
    secrets = base / "rsyncd.secrets"
    secrets.write_text(f"{USER}:{PASSWORD.decode()}\n")
    secrets.chmod(0o600)
    port = free_port()
    text = SAMPLE.read_text()
    for key, value in [
        ("pid file", str(base / "rsyncd.pid")),
        ("log file", str(base / "rsyncd.log")),
        ("secrets file", str(secrets)),
        ("port", str(port)),
        ("address", "127.0.0.1"),
    ]:
        text = _set(text, key, value)
    conf = base / "rsyncd.conf"
    conf.write_text(text)
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"])
    try:
        wait_for(lambda: _accepting(port), message="rsync daemon to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(os.geteuid() != 0, reason="the sample runs its module as root")
def test_the_sample_module_serves_absolute_paths_to_the_rsync_backend(tmp_path: Path) -> None:
    """fssync.root=/w fetches a worker's absolute path; a wrong password is refused."""
    worker = tmp_path / "worker" / "var" / "www"
    worker.mkdir(parents=True)
    (worker / "index.php").write_bytes(b"<?php echo 1;\n")
    staging = os.fsencode(tmp_path / "staging")
    local = tmp_path / "mirror-index.php"
    remote = os.fsencode(worker / "index.php")
    with sample_daemon(tmp_path) as port, private_reactor() as reactor:
        item = FetchItem(remote, os.fsencode(local))
        fetcher = RsyncFetcher("127.0.0.1", port, USER, PASSWORD, b"/w", staging, reactor)
        try:
            results = run_deferred(reactor, fetcher.fetch([item]))
        finally:
            run_deferred(reactor, fetcher.close())
        assert [r[1] for r in results] == [Outcome.DONE], results
        assert local.read_bytes() == b"<?php echo 1;\n"
        wrong = RsyncFetcher("127.0.0.1", port, USER, b"not-it", b"/w", staging, reactor)
        try:
            with pytest.raises(BackendUnavailable) as caught:
                run_deferred(reactor, wrong.fetch([item]))
        finally:
            run_deferred(reactor, wrong.close())
        assert caught.value.auth, caught.value


def test_the_sample_asks_for_what_the_guide_says() -> None:
    """Read-only, root, the one module [w] at /, a password, TCP_NODELAY."""
    text = SAMPLE.read_text()
    for line in [
        "read only = yes",
        "uid = root",
        "socket options = TCP_NODELAY",
        "[w]",
        "path = /",
        "auth users = backup",
        "strict modes = yes",
    ]:
        assert re.search(rf"^\s*{re.escape(line)}$", text, re.M), line
