"""Throughput of the fetch backends on this host (loopback servers).

Not a test: run by hand to compare backends and batch sizes, e.g.
    .venv/bin/python bench/bench_fetch.py --files 2000 --size 4096 --batch 1024
or the latency of one small change (one file per fetch, p50/p99), with the
rsync daemon's own socket with or without TCP_NODELAY:
    .venv/bin/python bench/bench_fetch.py --latency 200 --size 1024 [--daemon-nodelay]
Starts its own rsync daemon and embedded FTP server on 127.0.0.1 and removes
everything it made when done.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from twisted.internet.selectreactor import SelectReactor

from fs_sync.ftp import FtpFetcher
from fs_sync.interface import FetchItem, Outcome
from fs_sync.local import LocalFetcher
from fs_sync.rsync import RsyncFetcher

FTP_SERVER = r"""
import os, sys
from twisted.internet import reactor
from mirrord.ftpserver import make_ftp_factory
root = os.fsencode(sys.argv[1])
factory = make_ftp_factory(lambda p: p == root or p.startswith(root + b"/"), "b", b"b")
print(reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port, flush=True)
reactor.run()
"""


def run(reactor: SelectReactor, d: object, timeout: float = 600) -> object:
    """Drive `reactor` until `d` fires.

    The check sits between running the calls and selecting: `iterate()`
    would run the thread's result and then block in select for its whole
    timeout, a 50 ms floor under every latency figure. The waker (added to
    the readers only by `run()`) makes select return when a thread calls in.
    """
    box: list[object] = []
    d.addBoth(box.append)  # type: ignore[attr-defined]
    if reactor.waker not in reactor.getReaders():
        reactor.addReader(reactor.waker)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reactor.runUntilCurrent()
        if box:
            return box[0]
        reactor.doIteration(0.05)
    raise SystemExit("timed out")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(
    name: str, make: object, remotes: list[bytes], dst: bytes, batch: int, size: int
) -> None:
    reactor = SelectReactor()
    fetcher = make(reactor)  # type: ignore[operator]
    items = [FetchItem(r, os.path.join(dst, b"%d" % i)) for i, r in enumerate(remotes)]
    start = time.monotonic()
    done = 0
    for i in range(0, len(items), batch):
        results = run(reactor, fetcher.fetch(items[i : i + batch]))
        done += sum(1 for r in results if r[1] is Outcome.DONE)  # type: ignore[union-attr]
    elapsed = time.monotonic() - start
    run(reactor, fetcher.close())
    mb = done * size / 1e6
    rate = f"{done / elapsed:9.0f} files/s  {mb / elapsed:8.1f} MB/s"
    print(f"{name:6} {done}/{len(items)} files  {rate}")
    shutil.rmtree(dst)
    os.mkdir(dst)


def latency(name: str, make: object, remote: bytes, dst: bytes, rounds: int) -> None:
    """Fetch one file `rounds` times, one item per fetch, as a lone FWRITE would."""
    reactor = SelectReactor()
    fetcher = make(reactor)  # type: ignore[operator]
    item = FetchItem(remote, os.path.join(dst, b"one"))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        [(_, outcome, message)] = run(reactor, fetcher.fetch([item]))  # type: ignore[misc]
        times.append((time.perf_counter() - start) * 1000)
        if outcome is not Outcome.DONE:
            raise SystemExit(f"{name}: {outcome} {message}")
    run(reactor, fetcher.close())
    times.sort()
    p50, p99 = times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]
    print(f"{name:6} one file x{rounds}: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  min {times[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--latency", type=int, default=0, help="rounds of a one-file fetch")
    parser.add_argument(
        "--daemon-nodelay", action="store_true", help="socket options = TCP_NODELAY in rsyncd.conf"
    )
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="bench-fetch-")
    src, dst = os.path.join(base, "src"), os.fsencode(os.path.join(base, "dst"))
    os.mkdir(src)
    os.mkdir(dst)
    payload = os.urandom(args.size)
    for i in range(args.files):
        with open(os.path.join(src, f"f{i}"), "wb") as f:
            f.write(payload)
    rel = [b"/f%d" % i for i in range(args.files)]
    absolute = [os.fsencode(src) + r for r in rel]
    conf = os.path.join(base, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write(f"use chroot = no\nlog file = {base}/log\n")
        if args.daemon_nodelay:
            f.write("socket options = TCP_NODELAY\n")
        f.write(f"[m]\n path = {src}\n uid = root\n gid = root\n")
    port = free_port()
    rsyncd = subprocess.Popen(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--config={conf}",
        ]
    )
    ftpd = subprocess.Popen([sys.executable, "-c", FTP_SERVER, src], stdout=subprocess.PIPE)
    try:
        ftp_port = int(ftpd.stdout.readline())  # type: ignore[union-attr]
        staging = os.path.join(os.fsencode(base), b"staging")
        if args.latency:
            latency("local", lambda r: LocalFetcher(os.fsencode(src), r), rel[0], dst, args.latency)
            rsync = lambda r: RsyncFetcher("127.0.0.1", port, None, None, b"/m", staging, r)  # noqa: E731
            latency("rsync", rsync, rel[0], dst, args.latency)
            ftp = lambda r: FtpFetcher("127.0.0.1", ftp_port, "b", b"b", b"", r)  # noqa: E731
            latency("ftp", ftp, absolute[0], dst, args.latency)
            return
        measure(
            "local", lambda r: LocalFetcher(os.fsencode(src), r), rel, dst, args.batch, args.size
        )
        measure(
            "rsync",
            lambda r: RsyncFetcher("127.0.0.1", port, None, None, b"/m", staging, r),
            rel,
            dst,
            args.batch,
            args.size,
        )
        measure(
            "ftp",
            lambda r: FtpFetcher("127.0.0.1", ftp_port, "b", b"b", b"", r),
            absolute,
            dst,
            args.batch,
            args.size,
        )
    finally:
        rsyncd.terminate()
        ftpd.terminate()
        rsyncd.wait()
        ftpd.wait()
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
