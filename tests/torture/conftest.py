"""Parametrise the torture tests by seed and backend from the command line.

``--seed N`` (repeatable) replaces the CI seeds, ``--backend B`` (repeatable)
restricts the backends, ``--soak MINUTES`` runs each test's writer for that
long instead of its short CI form.
"""

from __future__ import annotations

import pytest

from tests.torture.harness import BACKENDS

CI_SEEDS = (1, 2, 3)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    seeds = metafunc.config.getoption("seed") or list(
        getattr(metafunc.module, "CI_SEEDS", CI_SEEDS)
    )
    backends = metafunc.config.getoption("backend") or list(BACKENDS)
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", seeds)
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends)
    if "backends" in metafunc.fixturenames:
        metafunc.parametrize("backends", [tuple(backends)], ids=["+".join(backends)])


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> float | None:
    """Minutes of change asked for with --soak, else None (the CI form)."""
    return request.config.getoption("soak")
