"""Bytes per watched directory: our WatchTree against pyinotify's WatchManager.

Run: .venv/bin/python bench/bench_watches.py [DIRS]

Both maps are filled for the same synthetic tree of DIRS directories
(default 100,000; paths like /srv/www/site0042/uploads/2023/05/d0007) and
measured with tracemalloc.  No kernel watches are added: pyinotify's
``Watch`` objects are built as ``WatchManager.add_watch`` builds them and
stored in its ``_wmd`` dict (wd -> Watch), which is all it keeps per watch.
Also timed: path -> wd lookups (pyinotify's ``get_wd`` scans every watch),
an O(1) rename of a top directory, and ``remove_tree`` of one sub-tree.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections.abc import Iterator

import pyinotify

from mirrord.watches import WatchTree


def synthetic_tree(count: int) -> Iterator[bytes]:
    """``count`` directory paths, parents first, about 10 children per directory."""
    yield b"/srv/www"
    made = 1
    frontier = [b"/srv/www"]
    level = 0
    names = [b"site", b"uploads", b"2023", b"thumbnails", b"d"]
    while made < count:
        nxt = []
        for parent in frontier:
            for i in range(10):
                if made >= count:
                    break
                path = parent + b"/" + names[level % len(names)] + b"%04d" % i
                yield path
                nxt.append(path)
                made += 1
        frontier = nxt
        level += 1


def measure(build) -> tuple[object, int]:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    obj = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return obj, after - before


def build_tree(paths: list[bytes]) -> WatchTree:
    tree = WatchTree()
    for wd, path in enumerate(paths, 1):
        tree.add(wd, path)
    return tree


def build_pyinotify(paths: list[bytes], wm: pyinotify.WatchManager) -> dict:
    # pyinotify keeps the full str path it was given, so making it is part of the cost
    mask = pyinotify.IN_CREATE | pyinotify.IN_DELETE
    for wd, path in enumerate(paths, 1):
        wm._wmd[wd] = pyinotify.Watch(wd, os.fsdecode(path), mask, None, False, None)
    return wm._wmd


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    paths = list(synthetic_tree(count))
    str_paths = [os.fsdecode(p) for p in paths]
    avg_len = sum(map(len, paths)) / len(paths)

    tree, tree_bytes = measure(lambda: build_tree(paths))
    wm = pyinotify.WatchManager()
    try:
        _, wm_bytes = measure(lambda: build_pyinotify(paths, wm))
        sample = str_paths[-50:]
        t0 = time.perf_counter()
        for p in sample:
            wm.get_wd(p)
        wm_lookup = (time.perf_counter() - t0) / len(sample)
    finally:
        wm.close()

    t0 = time.perf_counter()
    for p in paths[-1000:]:
        tree.wd_of(p)
    tree_lookup = (time.perf_counter() - t0) / 1000

    print(f"{len(paths)} directories, average path length {avg_len:.0f} bytes")
    print(f"WatchTree:                {tree_bytes / len(paths):7.1f} bytes/dir")
    print(f"pyinotify WatchManager:   {wm_bytes / len(paths):7.1f} bytes/dir")
    print(
        f"path -> wd: WatchTree {tree_lookup * 1e6:.1f} us, pyinotify get_wd "
        f"{wm_lookup * 1e3:.2f} ms"
    )

    t0 = time.perf_counter()
    tree.move(paths[1], b"/srv/www/renamed")
    deep = len(paths)
    moved = tree.path_of(deep)
    print(
        f"rename of a top directory: {(time.perf_counter() - t0) * 1e6:.0f} us "
        f"(deepest watch now {moved!r})"
    )
    t0 = time.perf_counter()
    removed = tree.remove_tree(b"/srv/www/renamed")
    print(
        f"remove_tree of that sub-tree: {len(removed)} wds in "
        f"{(time.perf_counter() - t0) * 1e3:.0f} ms (one pass over all watches)"
    )


if __name__ == "__main__":
    main()
