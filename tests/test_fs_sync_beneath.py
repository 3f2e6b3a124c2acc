"""fs_sync.beneath: opening beneath a root never follows a symlink, also mid-race."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from fs_sync import beneath
from fs_sync.beneath import SymlinkInPath, components, open_beneath, open_root

#: Every test runs against both ways of opening: the kernel's openat2 and the
#: component-by-component walk that runs where openat2 is missing.
HAS_OPENAT2 = beneath._syscall is not None


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(beneath, "_syscall", None)
    elif not HAS_OPENAT2:
        pytest.skip("this kernel or libc has no openat2: only the walk runs here")
    return str(request.param)


def _read(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"SECRET")
    return root


def test_a_plain_path_opens_the_file(tree: Path) -> None:
    """Every component a directory, the last a file: its content."""
    assert _read(open_beneath(bytes(tree), b"d/e/f")) == b"inside"
    assert _read(open_beneath(bytes(tree), b"/d/e/f")) == b"inside"  # leading slash: same


def test_a_root_handle_serves_many_opens(tree: Path) -> None:
    """``root_fd`` from ``open_root``: the same answers, and the handle stays the caller's."""
    root_fd = open_root(bytes(tree))
    try:
        for _ in range(3):
            assert _read(open_beneath(bytes(tree), b"d/e/f", root_fd=root_fd)) == b"inside"
        os.symlink(tree.parent / "outside", tree / "d" / "out")
        with pytest.raises(SymlinkInPath):
            open_beneath(bytes(tree), b"d/out/f", root_fd=root_fd)
        os.fstat(root_fd)  # still open
    finally:
        os.close(root_fd)


def test_a_nul_byte_never_shortens_the_path(tree: Path) -> None:
    """``d/e/f\0x`` is refused, never opened as ``d/e/f`` (a C string ends at the NUL)."""
    with pytest.raises(ValueError):
        open_beneath(bytes(tree), b"d/e/f\0x")


def test_openat2_is_used_where_the_kernel_has_it(resolver: str, tree: Path) -> None:
    """Linux 5.6 and later: the one-call path is taken, not silently dropped."""
    os.close(open_beneath(bytes(tree), b"d/e/f"))
    assert (beneath._syscall is not None) is (resolver == "openat2")


def test_a_symlink_as_the_last_component_is_eloop(tree: Path) -> None:
    """A symlink where the file is asked for is never followed."""
    os.symlink(tree.parent / "outside" / "f", tree / "d" / "link")
    with pytest.raises(OSError) as info:
        open_beneath(bytes(tree), b"d/link")
    assert info.value.errno == errno.ELOOP


def test_a_symlinked_directory_in_the_path_is_refused(tree: Path) -> None:
    """A directory swapped for a symlink to outside the root leads nowhere."""
    os.symlink(tree.parent / "outside", tree / "d" / "out")
    with pytest.raises(SymlinkInPath) as info:
        open_beneath(bytes(tree), b"d/out/f")
    assert info.value.errno == errno.ELOOP


def test_a_file_used_as_a_directory_is_enotdir(tree: Path) -> None:
    """``d/e/f/g`` with ``f`` a file: ENOTDIR, as the kernel says it."""
    with pytest.raises(OSError) as info:
        open_beneath(bytes(tree), b"d/e/f/g")
    assert info.value.errno == errno.ENOTDIR


def test_dot_and_dotdot_are_refused_before_any_open() -> None:
    """``..`` could climb out of the root, ``.`` and empty names are not plain paths."""
    for rel in (b"../x", b"a/../../x", b"a/./b", b"a//b"):
        with pytest.raises(OSError) as info:
            components(rel)
        assert info.value.errno == errno.EINVAL
    assert components(b"/a/b/") == [b"a", b"b"]
    assert components(b"") == []


def test_the_root_itself_may_be_a_symlink(tree: Path, tmp_path: Path) -> None:
    """The administrator's root (an include root, ``fssync.root``) is followed."""
    os.symlink(tree, tmp_path / "alias")
    assert _read(open_beneath(bytes(tmp_path / "alias"), b"d/e/f")) == b"inside"


def test_a_directory_flipped_to_a_symlink_meanwhile_never_leaks(tree: Path) -> None:
    """While another thread swaps ``d`` between the real directory and a symlink
    to outside, thousands of opens return the inside file or an error, never
    the secret (the check-then-open race of issue 9)."""
    real, parked = tree / "d", tree / "d.real"
    link = tree / "d.link"
    os.symlink(tree.parent / "outside", link)
    (tree.parent / "outside" / "e").mkdir()
    (tree.parent / "outside" / "e" / "f").write_bytes(b"SECRET")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(real, parked)
            os.rename(link, real)  # d is now the symlink
            os.rename(real, link)
            os.rename(parked, real)  # d is the directory again

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen: dict[bytes, int] = {}
    deadline = time.monotonic() + 20
    try:
        while sum(seen.values()) < 5000 or not (b"inside" in seen and b"ELOOP" in seen):
            if time.monotonic() > deadline:
                break
            try:
                got = _read(open_beneath(bytes(tree), b"d/e/f"))
            except OSError as e:
                got = errno.errorcode[e.errno].encode()
            seen[got] = seen.get(got, 0) + 1
    finally:
        stop.set()
        flipper.join()
    assert b"SECRET" not in seen
    assert b"inside" in seen and b"ELOOP" in seen, seen  # both sides of the flip were met
