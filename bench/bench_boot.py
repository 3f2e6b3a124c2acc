"""mirrord boot next to a bare scandir walk: first and smooth boot, peak memory.

    .venv/bin/python bench/bench_boot.py 100000 1000000

For each size it builds a tree of empty files (100 to a directory) in a
temporary directory, runs a first boot (snapshot load), stops, then a
smooth boot (compare snapshot with the tree), and prints seconds, files per
second and peak RSS of the daemon.  Right before each boot it times a bare
walk of the same tree (recursive ``os.scandir`` and
``entry.stat(follow_symlinks=False)`` on every entry, in this process) and
prints boot/bare: what mirrord costs above merely reading the tree.
``start s`` is the part of the boot spent before mirrord's first line
(interpreter, imports, database open): a fixed cost that dominates the
ratio on small trees.  No
cache is dropped, so the page cache is warm for both the walk and the boot.
The issue's targets: first boot at most 3x the bare walk, smooth boot at
most 2x, peak RSS at most 128 MiB for 1,000,000 files.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, fs_info, make_tree, mirrord, peak_rss_kib  # noqa: E402


def bare_walk(root: str) -> tuple[float, int]:
    """Seconds to scandir + lstat every entry below ``root``, and the entries seen."""
    t0 = time.monotonic()
    seen = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entry.stat(follow_symlinks=False)
                seen += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return time.monotonic() - t0, seen


def boot(datadir: Path, port: int) -> tuple[float, float, int]:
    """Seconds to the daemon's first line and to 'boot init finished', and its peak RSS."""
    t0 = time.monotonic()
    daemon = mirrord(datadir, port)
    daemon.wait_for("")  # any line: the interpreter, its imports and the database are up
    started = time.monotonic() - t0
    daemon.wait_for("boot init finished")
    took = time.monotonic() - t0
    rss = peak_rss_kib(daemon.proc.pid)
    daemon.stop()
    return started, took, rss


def main(sizes: list[int]) -> None:
    print(
        f"{'files':>9} {'dirs':>6} {'boot':>6} {'seconds':>8} {'files/s':>9} {'peak MiB':>9}"
        f" {'start s':>7} {'bare s':>7} {'boot/bare':>9}"
    )
    for n in sizes:
        top = Path(tempfile.mkdtemp(prefix="bench-boot-", dir="/var/tmp"))
        try:
            t0 = time.monotonic()
            files, dirs = make_tree(top / "tree", n)
            print(
                f"# tree of {files} files in {dirs} dirs made in {time.monotonic() - t0:.1f}s",
                flush=True,
            )
            fs_info(top / "data", "-a", f"t:{top / 'tree'}")
            port = free_port()
            for kind in ("first", "smooth"):
                bare, _ = bare_walk(str(top / "tree"))
                started, took, rss = boot(top / "data", port)
                print(
                    f"{files:>9} {dirs:>6} {kind:>6} {took:>8.1f} {files / took:>9.0f} "
                    f"{rss / 1024:>9.1f} {started:>7.2f} {bare:>7.2f} {took / bare:>9.1f}",
                    flush=True,
                )
        finally:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000])
