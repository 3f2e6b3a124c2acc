"""The seeded generator, without I/O: determinism, coverage of every kind, valid names."""

from __future__ import annotations

import os

from tests.torture import workload
from tests.torture.workload import KINDS, Workload, check, sealed


def test_same_seed_same_operations():
    """Two generators with one seed yield equal operations; another seed differs."""
    a = list(Workload(7).ops(500))
    assert a == list(Workload(7).ops(500))
    assert a != list(Workload(8).ops(500))


def test_every_kind_is_produced():
    """Over 3000 operations every kind of change occurs at least a few times."""
    wl = Workload(1)
    list(wl.ops(3000))
    assert {k: wl.emitted[k] for k in KINDS if wl.emitted[k] < 5} == {}


def test_names_cover_the_hard_cases():
    """Names include spaces, Greek, Cyrillic, CJK, %, invalid UTF-8, a leading dash, a newline."""
    paths = [p for op in Workload(2).ops(3000) for p in _paths(op)]
    blob = "\n".join(paths)
    for needle in (" ", "ε", "и", "漢", "%", "/-dash", "new\nline", os.fsdecode(b"\xff")):
        assert needle in blob, needle


def test_no_newline_names_when_asked():
    """newline_names=False (the FTP backend cannot carry CR/LF) leaves newlines out."""
    paths = [p for op in Workload(2, newline_names=False).ops(3000) for p in _paths(op)]
    assert not any("\n" in p or "\r" in p for p in paths)


def test_operations_stay_in_the_three_areas():
    """Every path is below root/ or out/; the fixed directories are never removed or moved."""
    fixed = (workload.ROOT, workload.EXCL, workload.OUT)
    for op in Workload(3).ops(3000):
        for p in _paths(op):
            assert p.startswith(("root/", "out/")), op
        if isinstance(op, (workload.RmTree, workload.Rename)):
            assert getattr(op, "path", None) not in fixed and getattr(op, "src", None) not in fixed


def test_sizes_vary_and_some_overwrites_keep_the_size():
    """Contents range over 0 B .. 64 KiB; same-size overwrites keep the mtime (quick checks)."""
    ops = list(Workload(4).ops(3000))
    sizes = {len(op.content) for op in ops if isinstance(op, workload.Write)}
    assert 0 in sizes and 65536 in sizes and len(sizes) > 20
    assert any(isinstance(op, workload.Write) and op.keep_mtime for op in ops)


def test_sealed_contents_check_themselves():
    """A sealed content passes whole or appended to, and fails cut short or altered."""
    body = bytes(range(256)) * 10
    whole = sealed(body)
    assert check(whole) and check(whole + b"appended") and check(b"") and check(b"plain")
    assert not check(whole[:-1])
    assert not check(whole[:20])
    assert not check(whole[:-5] + b"XXXXX")


def _paths(op) -> list[str]:
    out = [getattr(op, a) for a in ("path", "src", "dst", "tmp", "final") if hasattr(op, a)]
    if isinstance(op, workload.FillThenRename):
        out += [f"{op.final}/{name}" for name, _ in op.files]
    return out
