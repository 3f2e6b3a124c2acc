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


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the torture suite (tests/torture): replay a seed, one backend, a soak."""
    group = parser.getgroup("torture")
    group.addoption(
        "--seed", type=int, action="append", default=[], help="torture seed (repeatable)"
    )
    group.addoption(
        "--backend",
        action="append",
        default=[],
        choices=("local", "rsync", "ftp"),
        help="torture backend (repeatable)",
    )
    group.addoption("--soak", type=float, default=None, metavar="MINUTES", help="torture soak")
