"""The README's first command ends in the quick start: it must show a change arrive."""

from __future__ import annotations

import subprocess
import sys


def test_quickstart_shows_a_change_arrive():
    """python -m mirrord.quickstart runs both daemons and sees the change in the mirror."""
    done = subprocess.run(
        [sys.executable, "-m", "mirrord.quickstart"], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "The change arrived in the mirror after" in done.stdout
    assert "is not mirrored: absent" in done.stdout
    assert "Quick start finished" in done.stdout
