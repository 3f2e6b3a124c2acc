"""mirrord's embedded FTP server, driven by a real FTP client (ftplib).

The server runs in a subprocess (Twisted's FTP module uses the global
reactor); the tests talk to it over TCP on 127.0.0.1.
"""

from __future__ import annotations

import errno
import ftplib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fs_sync.ftpbatch import FrameReader, Status, encode_names
from mirrord.ftpserver import open_served, segments_to_path
from tests.helpers import wait_for

USER, PASSWORD = "fsm", "pa55-word"

SERVER = r"""
import gc, os, signal, sys
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from mirrord.ftpserver import make_ftp_factory
port, user, password = int(sys.argv[1]), sys.argv[2], os.fsencode(sys.argv[3]) or None
roots = [os.fsencode(a) for a in sys.argv[4:]]
def included(p):
    return any(p == r or p.startswith(r + b"/") for r in roots)
def collect():
    gc.collect()  # an unhandled error in a Deferred is logged when it is collected
    print("log settled", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(reactor.callLater, 0, collect))
factory = make_ftp_factory(included, user, password)
listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
print(listening.getHost().port, flush=True)
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
reactor.run()
"""


@dataclass
class FtpServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path | None = None  # the server's log (its stderr), when it has one

    def log_mark(self) -> int:
        """Where the server's log ends now (see `settled_log`)."""
        assert self.log is not None
        return len(self.log.read_bytes())

    def settled_log(self, since: int = 0) -> str:
        """The server's log from `since` on, once all it had to do so far is logged."""
        log = self.log
        assert log is not None
        before = log.read_bytes().count(b"log settled")
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: log.read_bytes().count(b"log settled") > before, 10)
        return log.read_bytes()[since:].decode("utf-8", "replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_embedded_ftp(roots: list[bytes], port: int = 0, password: str = PASSWORD) -> FtpServer:
    """Start the embedded server serving `roots`; returns once it listens."""
    argv = [sys.executable, "-c", SERVER, str(port), USER, password, *roots]
    fd, log = tempfile.mkstemp(prefix="ftpserver-", suffix=".log")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=fd)
    os.close(fd)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its port once listening
    if not line:
        proc.wait(10)
        raise AssertionError(f"FTP server exited with {proc.returncode}: {Path(log).read_text()}")
    return FtpServer(proc, int(line), Path(log))


@dataclass
class Tree:
    root: Path  # included
    outside: Path  # not included
    server: FtpServer


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    base = tmp_path_factory.mktemp("ftpserver")
    root, outside = base / "www", base / "private"
    root.mkdir()
    outside.mkdir()
    (root / "index.html").write_bytes(b"<h1>hi</h1>")
    (root / "sub").mkdir()
    (root / "sub" / "f.txt").write_bytes(b"inner")
    (root / "big").write_bytes(os.urandom(16 << 20))
    (outside / "secret").write_bytes(b"do not serve")
    os.symlink(outside / "secret", root / "escape")
    os.symlink(root / "index.html", root / "alias")
    os.symlink(outside, root / "escape-dir")
    (base / "www-sibling").mkdir()
    (base / "www-sibling" / "x").write_bytes(b"prefix trap")
    server = start_embedded_ftp([os.fsencode(root)])
    try:
        yield Tree(root, outside, server)
    finally:
        server.stop()


def login(tree: Tree, user: str = USER, password: str = PASSWORD) -> ftplib.FTP:
    ftp = ftplib.FTP(encoding="latin-1", timeout=10)
    ftp.connect("127.0.0.1", tree.server.port)
    ftp.login(user, password)
    return ftp


def retr(ftp: ftplib.FTP, path: Path | bytes) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary("RETR " + os.fsencode(path).decode("latin-1"), out.write)
    return out.getvalue()


def test_serves_included_file_by_real_path(tree: Tree) -> None:
    """RETR of an included file's absolute path returns its content."""
    with login(tree) as ftp:
        assert retr(ftp, tree.root / "index.html") == b"<h1>hi</h1>"
        assert retr(ftp, tree.root / "sub" / "f.txt") == b"inner"


def test_symlink_inside_the_tree_is_not_followed(tree: Tree) -> None:
    """Even a symlink to an included file is not followed (contract 5): 550.

    fs_mirror gets symlinks as SYMLINK records and never fetches one; following
    them is what let a directory flipped to a symlink leak files (issue 9).
    """
    with login(tree) as ftp, pytest.raises(ftplib.error_perm, match="^550"):
        retr(ftp, tree.root / "alias")


@pytest.mark.parametrize(
    "relative",
    [
        "private/secret",
        "www/escape",
        "www/escape-dir/secret",
        "www-sibling/x",
        "www/../private/secret",
    ],
)
def test_paths_outside_included_trees_are_refused(tree: Tree, relative: str) -> None:
    """Outside the trees, by name, by prefix trick, by `..` or via a symlink: 550."""
    base = tree.root.parent
    with login(tree) as ftp, pytest.raises(ftplib.error_perm, match="^550"):
        retr(ftp, os.fsencode(base) + b"/" + relative.encode())


@pytest.mark.parametrize(
    "command",
    [
        "STOR {f}",
        "APPE {f}",
        "DELE {f}",
        "MKD {d}/new",
        "RMD {d}",
        "RNTO {d}/moved",
        "SITE CHMOD 777 {f}",
    ],
)
def test_write_commands_are_refused(tree: Tree, command: str) -> None:
    """Every command that would change the tree is refused with a 5xx reply."""
    cmd = command.format(f=tree.root / "index.html", d=tree.root / "sub")
    with login(tree) as ftp:
        if cmd.startswith(("STOR", "APPE")):
            with pytest.raises(ftplib.error_perm):
                ftp.storbinary(cmd, io.BytesIO(b"overwritten"))
        else:
            if cmd.startswith("RNTO"):
                ftp.sendcmd(f"RNFR {tree.root / 'index.html'}")  # 350: only remembered
            with pytest.raises(ftplib.error_perm):
                ftp.sendcmd(cmd)
    assert (tree.root / "index.html").read_bytes() == b"<h1>hi</h1>"
    assert (tree.root / "sub" / "f.txt").exists()
    assert not (tree.root / "sub" / "new").exists()


def test_anonymous_login_is_refused(tree: Tree) -> None:
    """`anonymous` gets 530, whatever password it offers."""
    with pytest.raises(ftplib.error_perm, match="^530"):
        login(tree, "anonymous", "guest@example.org")


def test_wrong_password_is_refused(tree: Tree) -> None:
    """The right user with a wrong password gets 530."""
    with pytest.raises(ftplib.error_perm, match="^530"):
        login(tree, USER, "nope")


def test_no_password_means_no_login(tree: Tree) -> None:
    """A server started without a password lets nobody in, even with an empty one."""
    server = start_embedded_ftp([os.fsencode(tree.root)], password="")
    try:
        for offered in ("", PASSWORD):
            with pytest.raises(ftplib.error_perm, match="^530"):
                login(Tree(tree.root, tree.outside, server), USER, offered)
    finally:
        server.stop()


def test_listing_shows_only_included_entries(tree: Tree) -> None:
    """LIST of an included dir shows it; the parent of the tree cannot be listed."""
    with login(tree) as ftp:
        lines: list[str] = []
        ftp.retrlines(f"LIST {tree.root}", lines.append)
        assert {line.split()[-1] for line in lines} >= {"index.html", "sub", "alias"}
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.retrlines(f"LIST {tree.root.parent}", lines.append)


def test_non_utf8_name_round_trips(tree: Tree) -> None:
    """A file name that is not UTF-8 is served byte for byte."""
    name = os.fsencode(tree.root) + b"/na\xefve-\xff"
    with open(name, "wb") as f:
        f.write(b"bytes")
    with login(tree) as ftp:
        assert retr(ftp, name) == b"bytes"


def test_segments_to_path() -> None:
    """Twisted's latin-1 segments turn back into the exact byte path."""
    assert segments_to_path(["var", "caf\xe9"]) == b"/var/caf\xe9"
    assert segments_to_path([]) == b"/"


def _served(included: Callable[[bytes], bool], path: bytes) -> bytes:
    fd = open_served(included, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def test_open_served_refuses_what_is_not_included_and_every_symlink(tmp_path: Path) -> None:
    """Only included paths open, and no symlink below the include root is followed."""
    inside = tmp_path / "in"
    (inside / "d").mkdir(parents=True)
    (inside / "d" / "file").write_bytes(b"ok")
    (tmp_path / "out").write_bytes(b"x")
    os.symlink(tmp_path / "out", inside / "link")
    os.symlink(tmp_path, inside / "dirlink")
    root = os.fsencode(inside)

    def included(p: bytes) -> bool:
        return p == root or p.startswith(root + b"/")

    assert _served(included, root + b"/d/file") == b"ok"
    for path, error in (
        (root + b"/link", errno.ELOOP),
        (root + b"/dirlink/out", errno.ELOOP),
        (os.fsencode(tmp_path / "out"), errno.ENOENT),
    ):
        with pytest.raises(OSError) as info:
            _served(included, path)
        assert info.value.errno == error, path


def test_open_served_through_a_symlinked_root(tmp_path: Path) -> None:
    """An include root reached through a symlink serves its files; excludes still hold."""
    real = tmp_path / "srv"
    (real / "excluded").mkdir(parents=True)
    (real / "excluded" / "secret").write_bytes(b"x")
    (real / "page").write_bytes(b"y")
    os.symlink(real, tmp_path / "www")
    os.symlink(real / "excluded" / "secret", real / "sneaky")
    root = os.fsencode(tmp_path / "www")

    def included(p: bytes) -> bool:
        inside = p == root or p.startswith(root + b"/")
        return inside and not p.startswith(root + b"/excluded")

    assert _served(included, root + b"/page") == b"y"
    for path in (root + b"/sneaky", root + b"/excluded/secret"):
        with pytest.raises(OSError):
            _served(included, path)


def test_a_directory_flipped_to_a_symlink_during_retrs_never_leaks(tree: Tree) -> None:
    """A worker user who owns a directory in the tree flips it to a symlink to a
    private directory and back while RETRs run: every RETR returns the inside
    file or 550, never the private file (issue 9: 3 leaks in 75 fetches)."""
    flip_dir, parked = tree.root / "flip", tree.root / "flip.real"
    flip_dir.mkdir()
    (flip_dir / "f").write_bytes(b"inside")
    (tree.outside / "f").write_bytes(b"do not serve")
    link = tree.root / "flip.link"
    os.symlink(tree.outside, link)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(flip_dir, parked)
            os.rename(link, flip_dir)
            os.rename(flip_dir, link)
            os.rename(parked, flip_dir)

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    try:
        with login(tree) as ftp:
            while sum(seen.values()) < 300 or not (b"inside" in seen and b"550" in seen):
                if time.monotonic() > deadline:
                    break
                try:
                    got = retr(ftp, flip_dir / "f")
                except ftplib.error_perm as e:
                    got = str(e)[:3].encode()
                seen[got] = seen.get(got, 0) + 1
    finally:
        stop.set()
        flipper.join()
        shutil.rmtree(flip_dir, ignore_errors=True)
        for leftover in (parked, link):
            if os.path.lexists(leftover):
                os.unlink(leftover) if leftover.is_symlink() else shutil.rmtree(leftover)
    assert b"do not serve" not in seen, seen
    assert b"inside" in seen and b"550" in seen, seen  # both sides of the flip were met


# -- clients that go away mid-transfer ------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a killed client's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _drain(conn: socket.socket) -> int:
    received = 0
    try:
        while block := conn.recv(1 << 16):
            received += len(block)
    except ConnectionResetError:
        pass
    conn.close()
    return received


def _assert_no_error_logged(tree: Tree, since: int) -> None:
    with login(tree) as ftp:  # the server still serves
        assert retr(ftp, tree.root / "index.html") == b"<h1>hi</h1>"
    log = tree.server.settled_log(since)
    for bad in ("Unhandled", "Traceback"):
        assert bad not in log, log[-4000:]


@pytest.mark.parametrize("name", ["index.html", "big"])
def test_control_connection_reset_during_retr_logs_no_error(tree: Tree, name: str) -> None:
    """A client whose control connection dies right after RETR (killed, link cut): the
    server logs no unhandled error and stops sending the file."""
    mark = tree.server.log_mark()
    ftp = login(tree)
    ftp.voidcmd("TYPE I")
    conn = socket.create_connection(ftp.makepasv(), timeout=10)
    ftp.putcmd(f"RETR {tree.root / name}")
    assert ftp.file is not None and ftp.sock is not None
    ftp.file.close()
    _reset(ftp.sock)
    received = _drain(conn)
    _assert_no_error_logged(tree, mark)
    if name == "big":
        assert received < (16 << 20)


def test_data_connection_closed_mid_retr_is_no_server_error(tree: Tree) -> None:
    """A client that drops the data connection mid-file gets a 4xx on the control
    connection, which stays usable, and the server logs no error."""
    mark = tree.server.log_mark()
    with login(tree) as ftp:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd(f"RETR {tree.root / 'big'}")
        conn.recv(1000)
        _reset(conn)
        with pytest.raises(ftplib.error_temp, match="^426"):
            ftp.voidresp()
        assert retr(ftp, tree.root / "sub" / "f.txt") == b"inner"
    _assert_no_error_logged(tree, mark)


# -- data connections -------------------------------------------------------------------


def test_port_and_eprt_are_refused(tree: Tree) -> None:
    """Active mode would let a client make the server connect anywhere (FTP bounce): 502."""
    with login(tree) as ftp:
        for command in ("PORT 127,0,0,1,7,208", "EPRT |1|127.0.0.1|2000|"):
            with pytest.raises(ftplib.error_perm, match="^502"):
                ftp.sendcmd(command)


def test_passive_port_listens_on_the_control_address_only(tree: Tree) -> None:
    """The passive port is bound to the address the client reached (not 0.0.0.0), and a
    connection to it from another source address is dropped before any data flows."""
    with login(tree) as ftp:
        ftp.voidcmd("TYPE I")
        host, port = ftp.makepasv()
        assert host == "127.0.0.1"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)
        intruder = socket.create_connection(
            (host, port), timeout=5, source_address=("127.0.0.3", 0)
        )
        assert _drain(intruder) == 0  # closed without a byte
        conn = socket.create_connection((host, port), timeout=5)  # the client itself still can
        ftp.putcmd(f"RETR {tree.root / 'index.html'}")
        assert ftp.getresp().startswith("125")
        assert _drain(conn) == len(b"<h1>hi</h1>")
        assert ftp.voidresp().startswith("226")


# -- MRTR: many files over one data connection -------------------------------------


def mrtr(ftp: ftplib.FTP, names: list[bytes]) -> list[tuple[Status, bytes, Status | None]]:
    """One MRTR spoken by hand: names out, frames back, folded per file."""
    from tests.test_fs_sync_ftpbatch import files_of

    ftp.voidcmd("TYPE I")
    with ftp.transfercmd("MRTR") as conn:
        conn.sendall(encode_names(names))
        reader, events = FrameReader(), []
        while block := conn.recv(1 << 16):
            events += reader.feed(block)
    assert reader.between_files
    assert ftp.voidresp().startswith("226")
    return files_of(events)


def test_mrtr_is_offered_and_sends_each_file_with_why_the_others_are_not(tree: Tree) -> None:
    root = os.fsencode(tree.root)
    names = [
        root + b"/index.html",
        root + b"/big",  # many chunks
        root + b"/missing",
        root + b"/sub",  # a directory
        root + b"/escape",  # a symlink out of the tree: never followed
        os.fsencode(tree.outside / "secret"),  # not included
        root + b"/sub/../../private/secret",  # climbs out
        root + b"/sub/f.txt",
    ]
    with login(tree) as ftp:
        assert "MRTR" in ftp.sendcmd("FEAT").split()
        files = mrtr(ftp, names)
        assert retr(ftp, tree.root / "sub" / "f.txt") == b"inner"  # the link is still good
    assert files == [
        (Status.OK, b"<h1>hi</h1>", Status.OK),
        (Status.OK, (tree.root / "big").read_bytes(), Status.OK),
        (Status.MISSING, b"", None),
        (Status.NOT_A_FILE, b"", None),
        (Status.MISSING, b"", None),
        (Status.MISSING, b"", None),
        (Status.MISSING, b"", None),
        (Status.OK, b"inner", Status.OK),
    ]


def test_mrtr_with_a_hostile_name_list_is_refused_and_the_session_goes_on(tree: Tree) -> None:
    mark = tree.server.log_mark()
    with login(tree) as ftp:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("MRTR")
        conn.sendall(b"/x" * 5000)  # a name that never ends, past MAX_NAME
        _drain(conn)  # the server cuts the data connection
        with pytest.raises(ftplib.error_perm, match="^501"):
            ftp.voidresp()
        assert retr(ftp, tree.root / "index.html") == b"<h1>hi</h1>"
    _assert_no_error_logged(tree, mark)


def test_mrtr_without_a_data_connection_is_a_sequence_error(tree: Tree) -> None:
    with login(tree) as ftp, pytest.raises(ftplib.error_perm, match="^503"):
        ftp.voidcmd("MRTR")
