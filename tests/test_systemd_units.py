"""etc/systemd's units: systemd accepts them, and they are as tight as each side allows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "etc" / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _installed(tmp_path: Path, unit: str, instance: str = "") -> Path:
    """The unit with ExecStart pointing at this venv's commands instead of /opt/mirrord."""
    text = (
        (UNITS / unit)
        .read_text()
        .replace("/opt/mirrord/bin/", str(Path(sys.executable).parent) + "/")
    )
    target = tmp_path / unit.replace("@.", f"@{instance}.")
    target.write_text(text)
    return target


@pytest.mark.parametrize("unit", ["mirrord.service", "fs_mirror@.service"])
def test_units_are_notify_services_that_reload_and_restart(unit: str) -> None:
    """Type=notify with a watchdog, reload by SIGHUP, restart on failure but not on exit 2."""
    text = (UNITS / unit).read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        assert line in text.splitlines(), line
    assert re.search(r"^WatchdogSec=\d+$", text, re.M)
    assert re.search(r"^ExecStart=/opt/mirrord/bin/\S+ -c /etc/", text, re.M)


@needs_systemd
@pytest.mark.parametrize(
    ("unit", "instance"), [("mirrord.service", ""), ("fs_mirror@.service", "worker01")]
)
def test_systemd_analyze_verifies_the_unit_and_rates_it_below_5(
    tmp_path: Path, unit: str, instance: str
) -> None:
    """``systemd-analyze verify`` is silent, and ``security`` rates the exposure below 5."""
    path = _installed(tmp_path, unit, instance)
    verify = subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    rated = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(path)], capture_output=True, text=True
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", rated.stdout)
    assert found, rated.stdout[-500:] + rated.stderr
    assert float(found.group(1)) < 5.0, rated.stdout[-2000:]
