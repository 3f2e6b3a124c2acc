"""Fixtures shared by the contract tests (a small tree, a mirrord serving it); local
fixtures of the same name in other test modules take precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons import Worker


@pytest.fixture
def src(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "index.php").write_bytes(b"<?php\n")
    return tree


@pytest.fixture
def worker(tmp_path: Path, src: Path):
    w = Worker(tmp_path / "w", [src])
    w.start()
    yield w
    if w.proc is not None and w.proc.popen.poll() is None:
        w.stop()
