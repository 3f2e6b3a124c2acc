"""mirrord boot: time to 'boot init finished' and peak memory, first and smooth boot.

    .venv/bin/python bench/bench_boot.py 100000 1000000

For each size it builds a tree of empty files (100 to a directory) in a
temporary directory, runs a first boot (snapshot load), stops, then a
smooth boot (compare snapshot with the tree), and prints seconds, files per
second and peak RSS of the daemon.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, fs_info, make_tree, mirrord, peak_rss_kib  # noqa: E402


def boot(datadir: Path, port: int) -> tuple[float, int]:
    daemon = mirrord(datadir, port)
    took = daemon.wait_for("boot init finished")
    rss = peak_rss_kib(daemon.proc.pid)
    daemon.stop()
    return took, rss


def main(sizes: list[int]) -> None:
    print(f"{'files':>9} {'dirs':>6} {'boot':>6} {'seconds':>8} {'files/s':>9} {'peak MiB':>9}")
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
                took, rss = boot(top / "data", port)
                print(
                    f"{files:>9} {dirs:>6} {kind:>6} {took:>8.1f} {files / took:>9.0f} "
                    f"{rss / 1024:>9.1f}",
                    flush=True,
                )
        finally:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000])
