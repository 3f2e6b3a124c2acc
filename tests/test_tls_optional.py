"""TLS is an optional extra: without pyOpenSSL everything but TLS works (contract 2.1).

A plain ``pip install .`` has no pyOpenSSL or service_identity.  These tests
run the real commands in a Python where importing either fails, as it does
there, so they hold on a machine where the ``tls`` extra is installed too.
CI also runs the README's main command on a plain install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.daemons import Proc, fs_info
from tests.helpers import free_port

#: Run one of our commands with the tls extra's modules made unimportable.
WITHOUT_TLS = (
    "import sys; sys.modules['OpenSSL'] = None; sys.modules['service_identity'] = None; "
    "from {module} import main; sys.argv[0] = {name!r}; sys.exit(main())"
)


def without_tls(module: str, name: str, *args: str) -> list[str]:
    return [sys.executable, "-c", WITHOUT_TLS.format(module=module, name=name), *args]


def test_mirrord_serves_without_the_tls_extra(tmp_path: Path):
    """mirrord starts, says 'boot init finished' and stops cleanly with no pyOpenSSL."""
    src = tmp_path / "src"
    src.mkdir()
    data = tmp_path / "data"
    assert fs_info("-o", f"datadir={data}", "-a", f"t:{src}").returncode == 0
    port = free_port()
    proc = Proc(without_tls("mirrord.main", "mirrord", "-o", f"datadir={data}", "-o",
                            "bind=127.0.0.1", "-o", f"port={port}"))  # fmt: skip
    try:
        proc.wait_line("boot init finished", 30)
    finally:
        assert proc.stop() == 0, proc.output()
    assert "OpenSSL" not in proc.output()


def test_mirrord_asking_for_tls_without_the_extra_is_exit_2(tmp_path: Path):
    """tls.cert/tls.key without the extra: exit 2, one line naming the key and the extra."""
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    done = subprocess.run(
        without_tls("mirrord.main", "mirrord", "-o", f"datadir={tmp_path}", "-o",
                    f"tls.cert={tmp_path / 'c.pem'}", "-o", f"tls.key={tmp_path / 'k.pem'}"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "tls.cert" in done.stderr and "mirrord[tls]" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_fs_mirror_asking_for_tls_without_the_extra_is_exit_2(tmp_path: Path):
    """fs_mirror -o tls=yes without the extra: exit 2 naming the key and the extra."""
    datadir = tmp_path / "mirror"
    done = subprocess.run(
        without_tls("fs_mirror.main", "fs_mirror", "-o", "host=127.0.0.1", "-o", "tls=yes",
                    "-o", "fssync.type=report", f"--datadir={datadir}"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "tls" in done.stderr and "mirrord[tls]" in done.stderr
