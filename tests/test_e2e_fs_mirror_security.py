"""A real mirrord and a real fs_mirror with a shared secret and with TLS on loopback."""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    command,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import wait_for


def fs_mirror(worker: Worker, datadir: Path, *extra: str) -> Proc:
    return start_fs_mirror(worker, datadir, *extra)


def small_tree(src: Path) -> None:
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_bytes(b"root:x:0:0\n")
    (src / "etc" / "shadow").write_bytes(b"root:*:1\n")


def secrets(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.write_text("mirror sesame-1234\nwrong open-up-5678\n")
    path.chmod(0o600)
    return path


def test_shared_secret_converges(tmp_path: Path):
    """mirrord and fs_mirror with the same auth.secret-from converge, live changes included."""
    src = tmp_path / "src"
    small_tree(src)
    keys = secrets(tmp_path)
    w = Worker(tmp_path / "mirrord", [src], options=["-o", f"auth.secret-from={keys}:mirror"])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", f"auth.secret-from={keys}:mirror")
    try:
        client.wait_line("init finished", 30)
        (src / "etc" / "group").write_bytes(b"root:x:0:\n")
        wait_converged(src, backup)
        assert "authentication" not in client.output().lower()
    finally:
        assert client.stop() == 0
        w.stop()
    assert_clean_output(client)


def test_wrong_secret_exits_1_saying_what_to_do(tmp_path: Path):
    """A wrong secret stops fs_mirror with exit 1, 'authentication failed' and the key to check."""
    src = tmp_path / "src"
    small_tree(src)
    keys = secrets(tmp_path)
    w = Worker(tmp_path / "mirrord", [src], options=["-o", f"auth.secret-from={keys}:mirror"])
    w.start()
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", f"auth.secret-from={keys}:wrong")
    try:
        assert client.popen.wait(30) == 1
        client._reader.join(2)
        out = client.output()
        assert "authentication failed" in out.lower(), out
        assert "auth.secret-from" in out, out
        assert not mirror_of(backup, src).exists()
    finally:
        client.kill()
        w.stop()


def test_no_secret_against_a_challenging_mirrord_exits_1(tmp_path: Path):
    """No secret, challenged by mirrord: fs_mirror exits 1 telling to set auth.secret-from."""
    src = tmp_path / "src"
    small_tree(src)
    keys = secrets(tmp_path)
    w = Worker(tmp_path / "mirrord", [src], options=["-o", f"auth.secret-from={keys}:mirror"])
    w.start()
    client = fs_mirror(w, tmp_path / "backup")
    try:
        assert client.popen.wait(30) == 1
        client._reader.join(2)
        assert "auth.secret-from" in client.output(), client.output()
    finally:
        client.kill()
        w.stop()


def openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def make_ca(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate and its key."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_server_cert(tmp_path: Path, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    """A server certificate for ``san`` signed by ``ca``."""
    cert, key, csr = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "server.csr"
    ext = tmp_path / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=worker01",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


def tls_worker(tmp_path: Path, src: Path, san: str = "IP:127.0.0.1") -> tuple[Worker, Path]:
    ca = make_ca(tmp_path, "ca")
    cert, key = make_server_cert(tmp_path, ca, san)
    w = Worker(
        tmp_path / "mirrord", [src], options=["-o", f"tls.cert={cert}", "-o", f"tls.key={key}"]
    )
    w.start()
    return w, ca[0]


def test_tls_verified_against_the_ca_converges(tmp_path: Path):
    """tls=yes with tls.ca of the CA that signed mirrord's cert (IP SAN 127.0.0.1) converges."""
    src = tmp_path / "src"
    small_tree(src)
    w, ca = tls_worker(tmp_path, src)
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", "tls=yes", "-o", f"tls.ca={ca}")
    try:
        client.wait_line("init finished", 30)
        (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
        wait_converged(src, backup)
    finally:
        assert client.stop() == 0
        w.stop()
    assert_clean_output(client)


def test_tls_with_a_foreign_ca_is_refused(tmp_path: Path):
    """A CA that did not sign mirrord's cert: fs_mirror logs why it refuses and applies nothing."""
    src = tmp_path / "src"
    small_tree(src)
    w, _ = tls_worker(tmp_path, src)
    other, _ = make_ca(tmp_path, "other-ca")
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", "tls=yes", "-o", f"tls.ca={other}")
    try:
        client.wait_line("check that tls.ca holds the CA that signed", 20)
        client.wait_line("certificate verify failed", 20, count=2)  # retried, still refused
        assert client.popen.poll() is None
        assert not mirror_of(backup, src).exists()
        assert not (backup / "sn").exists() or (backup / "sn").read_text().strip() == ""
    finally:
        assert client.stop() == 0
        w.stop()


def test_tls_with_a_cert_for_another_name_is_refused(tmp_path: Path):
    """mirrord's cert names another host (DNS SAN only): connecting to 127.0.0.1 is refused."""
    src = tmp_path / "src"
    small_tree(src)
    w, ca = tls_worker(tmp_path, src, san="DNS:worker01.example")
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", "tls=yes", "-o", f"tls.ca={ca}")
    try:
        client.wait_line("certificate does not name the host we connected to (127.0.0.1)", 20)
        assert "init finished" not in client.output()
        assert not mirror_of(backup, src).exists()
    finally:
        assert client.stop() == 0
        w.stop()


def test_tls_ca_bundle_with_several_cas(tmp_path: Path):
    """tls.ca may be a bundle: the CA that signed mirrord's cert need not be the first one."""
    src = tmp_path / "src"
    small_tree(src)
    w, ca = tls_worker(tmp_path, src)
    other, _ = make_ca(tmp_path, "other-ca")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(other.read_bytes() + b"\n" + ca.read_bytes())
    backup = tmp_path / "backup"
    client = fs_mirror(w, backup, "-o", "tls=yes", "-o", f"tls.ca={bundle}")
    try:
        client.wait_line("init finished", 30)
        wait_converged(src, backup)
    finally:
        assert client.stop() == 0
        w.stop()


def tls_secret_worker(tmp_path: Path, src: Path, keys: Path) -> tuple[Worker, Path]:
    """mirrord speaking TLS (a cert for IP 127.0.0.1) and challenging with the shared secret."""
    ca = make_ca(tmp_path, "ca")
    cert, key = make_server_cert(tmp_path, ca, "IP:127.0.0.1")
    options = ["-o", f"tls.cert={cert}", "-o", f"tls.key={key}"]
    w = Worker(
        tmp_path / "mirrord", [src], options=[*options, "-o", f"auth.secret-from={keys}:mirror"]
    )
    w.start()
    return w, ca[0]


def test_tls_and_secret_converge(tmp_path: Path):
    """Over TLS with a shared secret both daemons compute the same channel binding: converge."""
    src = tmp_path / "src"
    small_tree(src)
    keys = secrets(tmp_path)
    w, ca = tls_secret_worker(tmp_path, src, keys)
    backup = tmp_path / "backup"
    client = fs_mirror(
        w, backup, "-o", "tls=yes", "-o", f"tls.ca={ca}", "-o", f"auth.secret-from={keys}:mirror"
    )
    try:
        client.wait_line("init finished", 30)
        (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
        wait_converged(src, backup)
    finally:
        assert client.stop() == 0
        w.stop()
    assert_clean_output(client)


class TlsRelay:
    """A man in the middle holding a certificate the victim trusts.

    It terminates the victim's TLS, opens a TLS connection of its own to the
    real mirrord and passes the bytes through both ways unchanged, keeping
    what mirrord said.  It knows nothing of the protocol.
    """

    def __init__(self, cert: Path, key: Path, upstream: int) -> None:
        self.upstream = upstream
        self.serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.serving.load_cert_chain(cert, key)
        self.dialing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.dialing.check_hostname = False
        self.dialing.verify_mode = ssl.CERT_NONE
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.from_mirrord = b""
        threading.Thread(target=self._accept, daemon=True).start()

    def said(self) -> bytes:
        with self.lock:
            return self.from_mirrord

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            victim = self.serving.wrap_socket(conn, server_side=True)
            raw = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            mirrord = self.dialing.wrap_socket(raw, server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError):
            conn.close()
            return
        victim.settimeout(10)
        peer = {victim: mirrord, mirrord: victim}
        try:
            while True:
                ready = [s for s in peer if s.pending()]
                if not ready:
                    ready, _, _ = select.select(list(peer), [], [], 10)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is mirrord:
                        with self.lock:
                            self.from_mirrord += data
                    peer[s].sendall(data)
        except (ssl.SSLError, OSError):
            return
        finally:
            victim.close()
            mirrord.close()

    def close(self) -> None:
        self.sock.close()


def test_a_tls_relay_of_the_auth_is_refused_by_mirrord(tmp_path: Path):
    """A relay between two TLS connections cannot pass fs_mirror's AUTH on to mirrord.

    Issue 9: a fake server relayed a real nonce to a victim fs_mirror and the real
    mirrord streamed its tree to the relay.  The proofs now cover each TLS
    connection's RFC 9266 exporter value, which differs on the two legs, so
    mirrord answers AUTH FAILED and the relay gets nothing of the tree.
    """
    src = tmp_path / "src"
    small_tree(src)
    keys = secrets(tmp_path)
    w, ca = tls_secret_worker(tmp_path, src, keys)
    (tmp_path / "relay").mkdir()
    ca_key = tmp_path / "ca.key"
    relay_cert, relay_key = make_server_cert(tmp_path / "relay", (ca, ca_key), "IP:127.0.0.1")
    relay = TlsRelay(relay_cert, relay_key, w.port)
    victim = Proc([command("fs_mirror"),
                   "-o", "host=127.0.0.1", "-o", f"port={relay.port}", "-o", "reconnect.max=1",
                   "-o", "fssync.type=local", "-o", "tls=yes", "-o", f"tls.ca={ca}",
                   "-o", f"auth.secret-from={keys}:mirror",
                   f"--datadir={tmp_path / 'victim'}"])  # fmt: skip
    try:
        wait_for(
            lambda: b"AUTH FAILED" in relay.said() or b"SESSION:" in relay.said(),
            30,
            0.02,
            "mirrord to answer the relayed AUTH",
        )
        assert b"SESSION:" not in relay.said(), "mirrord streamed its tree to the relay"
        assert b"AUTH FAILED" in relay.said()
        assert not mirror_of(tmp_path / "victim", src).exists()
    finally:
        victim.kill()
        relay.close()
        w.stop()
