"""Private hosts made of network namespaces: N workers and one backup host.

Each worker namespace is joined to the backup namespace by its own veth pair
on its own /30 (worker 10.231.I.1, backup 10.231.I.2). The pairs are created
directly inside the namespaces, so nothing of ours ever exists in the
machine's own namespace, no route leads outside, and deleting the namespaces
removes everything. Names carry a random tag per run, so concurrent runs do
not meet. A link is cut the way an operator would cut it: ``ip link set DEV
down`` on the backup side.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from tests.helpers import wait_for


def ip(*args: str) -> str:
    """Run ``ip ARGS``; fail with its stderr."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the torture suite as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        return f"ip netns does not work here: {done.stderr.strip()}"
    return None


class Hosts:
    """Names and addresses of one run's namespaces, and the link switch."""

    def __init__(self, workers: int) -> None:
        self.tag = secrets.token_hex(3)
        self.backup = f"tt{self.tag}b"
        self.workers = [f"tt{self.tag}w{i}" for i in range(workers)]
        self.made: list[str] = []

    def worker_addr(self, i: int) -> str:
        return f"10.231.{i}.1"

    def backup_addr(self, i: int) -> str:
        return f"10.231.{i}.2"

    def backup_dev(self, i: int) -> str:
        """The backup host's end of worker ``i``'s link."""
        return f"bk{i}"

    def prefix(self, ns: str) -> list[str]:
        """Argument vector prefix that runs a command inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]

    def build(self, sysctls: Mapping[str, str]) -> None:
        for ns in (self.backup, *self.workers):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            for key, value in sysctls.items():
                done = subprocess.run(
                    [*self.prefix(ns), "sysctl", "-q", "-w", f"{key}={value}"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"sysctl {key}={value} in {ns}: {done.stderr.strip()}")
        for i, wns in enumerate(self.workers):
            dev = self.backup_dev(i)
            ip("-n", self.backup, "link", "add", dev, "type", "veth", "peer", "name", "wk0",
               "netns", wns)  # fmt: skip
            ip("-n", wns, "addr", "add", f"{self.worker_addr(i)}/30", "dev", "wk0")
            ip("-n", self.backup, "addr", "add", f"{self.backup_addr(i)}/30", "dev", dev)
            ip("-n", wns, "link", "set", "wk0", "up")
            ip("-n", self.backup, "link", "set", dev, "up")
        for i in range(len(self.workers)):
            self.wait_link(i, up=True)

    def link_up(self, i: int) -> bool:
        """True when the backup end of link ``i`` is up with carrier."""
        out = ip("-n", self.backup, "-o", "link", "show", "dev", self.backup_dev(i))
        flags = out.split("<", 1)[1].split(">", 1)[0].split(",")
        return "UP" in flags and "LOWER_UP" in flags

    def wait_link(self, i: int, *, up: bool, timeout: float = 10.0) -> None:
        state = "up" if up else "down"
        wait_for(lambda: self.link_up(i) == up, timeout, 0.02, f"link {i} {state}")

    def cut(self, i: int) -> None:
        """Cut worker ``i``'s link at the backup host."""
        ip("-n", self.backup, "link", "set", self.backup_dev(i), "down")
        self.wait_link(i, up=False)

    def restore(self, i: int) -> None:
        ip("-n", self.backup, "link", "set", self.backup_dev(i), "up")
        self.wait_link(i, up=True)

    def destroy(self) -> None:
        """Kill whatever still runs in our namespaces, then delete them."""
        for ns in self.made:
            done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in done.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.made.clear()


@contextmanager
def private_hosts(workers: int = 2, sysctls: Mapping[str, str] | None = None) -> Iterator[Hosts]:
    """Namespaces for ``workers`` workers and one backup host, removed however the block ends."""
    hosts = Hosts(workers)
    try:
        hosts.build(sysctls or {})
        yield hosts
    finally:
        hosts.destroy()
