"""The rsync backend against a real `rsync --daemon` on 127.0.0.1.

The daemon requires a user and password (auth users + secrets file), so
every contract test also proves the RSYNC_PASSWORD path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fs_sync.interface import (
    BackendUnavailable,
    FetchItem,
    Outcome,
    Result,
    is_local_disk_error,
)
from fs_sync.rsync import (
    RsyncFetcher,
    _collect,
    build_argv,
    daemon_url,
    file_errors,
    local_disk_error,
    offers_trust_sender,
    split_module,
    whole_run_error,
)
from tests.fetcher_contract import Backend, FetcherContract, private_reactor, run_deferred
from tests.helpers import free_port, wait_for

USER, PASSWORD = "fsm", b"s3cret-pw"


@dataclass
class Daemon:
    served: bytes
    port: int
    staging: bytes
    #: served by module `worker`, whose daemon process runs as `nobody`, so
    #: a file mode 0600 owned by root is unreadable there, as on a real worker
    worker_served: bytes = b""


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def rsync_daemon(base: Path, modules: str) -> Iterator[int]:
    """An `rsync --daemon` on 127.0.0.1 serving `modules` (rsyncd.conf text); yields its port."""
    conf = base / "rsyncd.conf"
    conf.write_text(
        f"pid file = {base}/rsyncd.pid\nlog file = {base}/rsyncd.log\nuse chroot = no\n{modules}"
    )
    port = free_port()
    argv = ["rsync", "--daemon", "--no-detach", "--address=127.0.0.1", f"--port={port}"]
    proc = subprocess.Popen([*argv, f"--config={conf}"])
    try:
        wait_for(lambda: _accepting(port), message="rsync daemon to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("rsyncd")
    served = base / "served"
    served.mkdir()
    secrets = base / "secrets"
    secrets.write_text(f"{USER}:{PASSWORD.decode()}\n")
    secrets.chmod(0o600)
    # pytest's base directory is 0700: `nobody` needs a path it can walk
    worker = Path(tempfile.mkdtemp(prefix="rsyncd-worker-"))
    worker.chmod(0o755)
    auth = f"  auth users = {USER}\n  secrets file = {secrets}\n  strict modes = yes\n"
    modules = (
        f"[mirror]\n  path = {served}\n  read only = yes\n  uid = root\n  gid = root\n{auth}"
        f"[worker]\n  path = {worker}\n  read only = yes\n  uid = nobody\n  gid = nogroup\n{auth}"
    )
    try:
        with rsync_daemon(base, modules) as port:
            staging = os.fsencode(base / "staging")
            yield Daemon(os.fsencode(served), port, staging, os.fsencode(worker))
    finally:
        shutil.rmtree(worker)


@pytest.fixture
def backend(daemon: Daemon) -> Backend:
    def make(reactor: object) -> RsyncFetcher:
        return RsyncFetcher(
            "127.0.0.1", daemon.port, USER, PASSWORD, b"/mirror", daemon.staging, reactor
        )

    def leftovers() -> list[bytes]:
        return os.listdir(daemon.staging) if os.path.isdir(daemon.staging) else []

    return Backend(
        served=daemon.served,
        remote_of=lambda path: path[len(daemon.served) :],  # module `mirror` = served
        make=make,
        leftovers=leftovers,
    )


class TestRsyncContract(FetcherContract):
    """The shared contract for `rsync`, against a password-protected module."""

    def other_fetcher(
        self, daemon: Daemon, *, port: int = 0, password: bytes = PASSWORD, root: bytes = b"/mirror"
    ) -> RsyncFetcher:
        return RsyncFetcher(
            "127.0.0.1", port or daemon.port, USER, password, root, daemon.staging, self.reactor
        )

    def fetch_with(self, fetcher: RsyncFetcher, *items: FetchItem) -> list[Result]:
        try:
            return run_deferred(self.reactor, fetcher.fetch(list(items)))
        finally:
            run_deferred(self.reactor, fetcher.close())

    def test_wrong_password_is_backend_unavailable(self, daemon: Daemon) -> None:
        """A refused password fails the whole fetch: auth=True, naming the user and host."""
        self.source(b"a", b"A")
        bad = self.other_fetcher(daemon, password=b"wrong")
        with pytest.raises(BackendUnavailable) as caught:
            self.fetch_with(bad, self.item(b"a"), self.item(b"b"))
        assert caught.value.auth is True
        message = str(caught.value)
        assert f"user {USER}" in message and f"127.0.0.1:{daemon.port}" in message
        assert "password" in message and "\n" not in message
        assert not os.path.exists(self.item(b"a").local)

    def test_stopped_daemon_is_backend_unavailable(self, daemon: Daemon, tmp_path: Path) -> None:
        """A daemon that has stopped fails the whole fetch: auth=False, naming host and port."""
        self.source(b"a", b"A")
        (tmp_path / "m").mkdir()
        with rsync_daemon(tmp_path, f"[mirror]\n  path = {tmp_path}/m\n") as port:
            pass  # started, listened, stopped
        gone = self.other_fetcher(daemon, port=port)
        with pytest.raises(BackendUnavailable) as caught:
            self.fetch_with(gone, self.item(b"a"))
        assert caught.value.auth is False
        assert f"127.0.0.1:{port}" in str(caught.value)
        assert "Connection refused" in str(caught.value)

    def test_same_path_twice_in_a_batch(self) -> None:
        """One remote path asked for two local copies fills both."""
        self.source(b"s", b"shared")
        first = self.item(b"s")
        second = FetchItem(first.remote, os.path.join(self.dst, b"s2"))
        results = self.fetch(first, second)
        assert [r[1] for r in results] == [Outcome.DONE, Outcome.DONE]
        assert self.read(b"s") == self.read(b"s2") == b"shared"

    def test_changed_big_file_is_sent_as_a_delta(self) -> None:
        """A big file changed in a few bytes is rebuilt from the mirror's old copy."""
        data = bytearray(os.urandom(4 << 20))
        self.source(b"big", bytes(data))
        remote = self.item(b"big").remote
        # the mirror's layout: the module's relative path under the mirror root
        item = FetchItem(remote, self.dst + remote)
        os.makedirs(os.path.dirname(item.local), exist_ok=True)
        assert [r[1] for r in self.fetch(item)] == [Outcome.DONE]
        first_literal = self.fetcher.literal_bytes
        data[1000:1010] = b"0123456789"
        self.source(b"big", bytes(data))
        assert [r[1] for r in self.fetch(item)] == [Outcome.DONE]
        with open(item.local, "rb") as f:
            assert f.read() == bytes(data)
        assert first_literal >= 4 << 20
        assert self.fetcher.literal_bytes - first_literal < 256 << 10
        assert self.fetcher.matched_bytes > 3 << 20

    def test_unknown_module_is_backend_unavailable(self, daemon: Daemon) -> None:
        """Asking a module the daemon does not have fails the whole fetch, naming the module."""
        self.source(b"a", b"A")
        other = self.other_fetcher(daemon, root=b"")
        item = FetchItem(b"/nomodule" + self.item(b"a").remote, os.path.join(self.dst, b"a"))
        with pytest.raises(BackendUnavailable) as caught:
            self.fetch_with(other, item)
        assert caught.value.auth is False
        assert "nomodule" in str(caught.value)
        assert not os.path.exists(item.local)

    def test_unreadable_file_on_worker_fails_alone(self, daemon: Daemon) -> None:
        """A file the daemon may not read is FAILED with the reason; the rest DONE or VANISHED."""
        sub = os.path.join(daemon.worker_served, os.path.basename(self.src))
        os.makedirs(sub)
        os.chmod(sub, 0o755)
        for name, mode in ((b"open", 0o644), (b"secret", 0o600), (b"also", 0o644)):
            with open(os.path.join(sub, name), "wb") as f:
                f.write(name)
            os.chmod(os.path.join(sub, name), mode)
        rel = b"/" + os.path.basename(self.src) + b"/"
        names = (b"open", b"secret", b"gone", b"also")
        items = [FetchItem(rel + n, os.path.join(self.dst, n)) for n in names]
        results = self.fetch_with(self.other_fetcher(daemon, root=b"/worker"), *items)
        outcomes = [r[1] for r in results]
        assert outcomes == [Outcome.DONE, Outcome.FAILED, Outcome.VANISHED, Outcome.DONE]
        assert "Permission denied" in results[1][2]
        assert self.read(b"open") == b"open" and self.read(b"also") == b"also"
        assert not os.path.exists(items[1].local)


def test_split_module() -> None:
    """The first component is the module, the rest the path inside it."""
    assert split_module(b"/mirror/var/www/x") == (b"mirror", b"var/www/x")
    assert split_module(b"/mirror") is None
    assert split_module(b"") is None


def test_argv_has_no_password_and_no_shell(tmp_path: Path) -> None:
    """The command is an argument vector (URL, staging dir whole), its socket without Nagle."""
    url = daemon_url("::1", 873, "u", b"m\xff")
    argv = build_argv("rsync", url, b"/stage dir", 30)
    assert url == b"rsync://u@[::1]:873/m\xff/"
    assert argv[-2:] == [url, b"/stage dir/"]
    assert "--files-from=-" in argv and "--from0" in argv
    assert "--sockopts=TCP_NODELAY" in argv  # no 40 ms delayed-ACK stalls per run
    assert not any(b"pw" in (a if isinstance(a, bytes) else a.encode()) for a in argv)


def test_file_errors_read_escaped_names() -> None:
    """Each complaint of the sender maps the unescaped name to its errno and reason."""
    stderr = (
        b'rsync: [sender] link_stat "d/gone" (in m) failed: No such file or directory (2)\n'
        b'rsync: [sender] send_files failed to open "l\\#377\\#012 q"x\\#y" (in m): '
        b"Permission denied (13)\n"
        b'file has vanished: "d/went" (in m)\n'
        b"rsync error: some files/attrs were not transferred (code 23) at main.c(1956)\n"
    )
    assert file_errors(stderr) == {
        b"d/gone": (errno.ENOENT, "No such file or directory (2)"),
        b'l\xff\n q"x\\#y': (errno.EACCES, "Permission denied (13)"),
        b"d/went": (errno.ENOENT, 'file has vanished: "d/went" (in m)'),
    }


def test_local_disk_error_is_the_receivers_only() -> None:
    """ENOSPC said by the receiver is the mirror's disk; said by the sender it is not."""
    ours = b'rsync: [receiver] write failed on "/s/big": No space left on device (28)\n'
    theirs = b'rsync: [sender] read errors mapping "/x": Input/output error (5)\n'
    error = local_disk_error(theirs + ours)
    assert error is not None and error.errno == errno.ENOSPC
    assert local_disk_error(theirs) is None


def test_whole_run_errors_say_what_to_check() -> None:
    """Each whole-run failure is one line naming the daemon; only a refused login is auth."""
    where = "h:873"
    timeout = whole_run_error(
        30, b"rsync error: timeout in data send/receive (code 30)\n", where, "u", b"m", 60
    )
    protocol = whole_run_error(
        12, b"rsync error: error in rsync protocol data stream (code 12)\n", where, "u", b"m", 60
    )
    full = whole_run_error(
        5, b"@ERROR: max connections (2) reached -- try again later\n", where, "u", b"m", 60
    )
    nouser = whole_run_error(5, b"@ERROR: auth failed on module m\n", where, None, b"m", 60)
    for error in (timeout, protocol, full, nouser):
        assert where in str(error) and "\n" not in str(error)
    assert "60 s" in str(timeout) and "code 12" in str(protocol)
    assert "max connections" in str(full)
    assert [e.auth for e in (timeout, protocol, full, nouser)] == [False, False, False, True]
    assert "fssync.user" in str(nouser)


def test_full_staging_disk_fails_the_fetch(daemon: Daemon, tmp_path: Path) -> None:
    """rsync's own "No space left on device" fails the fetch with a LocalDiskError."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        name = b"/enospc-big"
        with open(daemon.served + name, "wb") as f:
            f.write(os.urandom(512 << 10))
        item = FetchItem(name, os.fsencode(tmp_path / "big"))
        with private_reactor() as reactor:
            fetcher = RsyncFetcher(
                "127.0.0.1", daemon.port, USER, PASSWORD, b"/mirror", os.fsencode(small), reactor
            )
            try:
                with pytest.raises(OSError) as caught:
                    run_deferred(reactor, fetcher.fetch([item]))
            finally:
                run_deferred(reactor, fetcher.close())
        assert is_local_disk_error(caught.value) and caught.value.errno == errno.ENOSPC
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_trust_sender_is_read_off_the_help() -> None:
    """Only an rsync that lists --trust-sender in its --help gets it."""
    assert offers_trust_sender(b"  --trust-sender           trust the remote sender's file list\n")
    assert not offers_trust_sender(b"rsync  version 3.1.3  protocol version 31\n--times, -t\n")
    url = daemon_url("127.0.0.1", 873, None, b"m")
    assert "--trust-sender" in build_argv("rsync", url, b"/s", 30, trust_sender=True)
    assert "--trust-sender" not in build_argv("rsync", url, b"/s", 30)


# -- installing from staging: what the daemon's side staged is not trusted --------


def _staged_tree(tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    staging, outside, mirror = (os.fsencode(tmp_path / n) for n in ("staging", "outside", "m"))
    for d in (staging, outside, mirror):
        os.mkdir(d)
    with open(outside + b"/f", "wb") as f:
        f.write(b"a file of the backup host")
    return staging, outside, mirror


def test_a_staged_directory_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    """A daemon that stages `a` as a symlink to /etc cannot get /etc/f moved into the
    mirror: the install refuses it and the file stays where it was."""
    staging, outside, mirror = _staged_tree(tmp_path)
    os.symlink(outside, staging + b"/a")
    item = FetchItem(b"/w/a/f", mirror + b"/f")
    _, outcome, reason = _collect(item, staging, b"a/f")
    assert outcome is Outcome.FAILED and "symlink" in reason
    assert os.path.exists(outside + b"/f") and not os.path.lexists(mirror + b"/f")
    os.makedirs(staging + b"/b/c")
    os.symlink(outside, staging + b"/b/c/d")  # deeper in the path too
    assert _collect(item, staging, b"b/c/d/f")[1] is Outcome.FAILED
    assert os.path.exists(outside + b"/f")


def test_a_staged_file_is_installed_and_others_are_told_apart(tmp_path: Path) -> None:
    staging, outside, mirror = _staged_tree(tmp_path)
    os.makedirs(staging + b"/a/b")
    with open(staging + b"/a/b/f", "wb") as f:
        f.write(b"staged")
    os.symlink(outside + b"/f", staging + b"/a/b/link")
    item = FetchItem(b"/w/a/b/f", mirror + b"/f")
    assert _collect(item, staging, b"a/b/f")[1] is Outcome.DONE
    with open(mirror + b"/f", "rb") as f:
        assert f.read() == b"staged"
    assert not os.path.lexists(staging + b"/a/b/f")
    assert _collect(item, staging, b"a/b/link")[1] is Outcome.NOT_A_FILE
    assert _collect(item, staging, b"a/b/gone")[1] is Outcome.VANISHED
    assert _collect(item, staging, b"x/y/gone")[1] is Outcome.VANISHED


def test_a_fifo_or_file_staged_in_a_directory_s_place_is_vanished(tmp_path: Path) -> None:
    """Neither hangs the install nor passes for a directory."""
    staging, _, mirror = _staged_tree(tmp_path)
    os.mkfifo(staging + b"/p")
    with open(staging + b"/file", "wb") as f:
        f.write(b"x")
    item = FetchItem(b"/w/p/f", mirror + b"/f")
    assert _collect(item, staging, b"p/f")[1] is Outcome.VANISHED
    assert _collect(item, staging, b"file/f")[1] is Outcome.VANISHED
