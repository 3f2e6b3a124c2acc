"""mypy, as pyproject.toml configures it, passes: the types are checked in CI, not by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_the_checked_packages() -> None:
    """All six packages type-check; protocol, fs_info, cmdconfig and mirrord's values strictly.

    mypy is in the test extra: missing, this fails rather than skips.
    """
    done = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
