"""A real mirrord and a real fs_mirror with a shared secret and with TLS on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    mirror_of,
    start_fs_mirror,
    wait_converged,
)


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
