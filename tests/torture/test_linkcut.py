"""Two workers and one backup host, the links cut while the workers change.

Each worker runs mirrord with its embedded FTP service in its own network
namespace; the backup namespace runs one fs_mirror per worker fetching over
FTP, so both the protocol and every file's content cross the veth link. A
writer keeps changing both workers' trees; a link is cut at the backup host
(``ip link set DEV down``) in the middle of it and restored. The promise
under test (contract 2.2): once the workers are quiet every mirror equals its
worker, with the session resumed (SN), never a second full sync, and a cut
link holds up nobody else.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mirrord.control import request
from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    churn,
    command,
    mirror_of,
    stamp_intact,
    tree_diff,
    wait_converged,
)
from tests.helpers import wait_for
from tests.torture.netns import Hosts, private_hosts, unavailable

pytestmark = pytest.mark.netns

PORT, FTP_PORT = 2123, 2121
RATE = 200  # changes a second, over both workers


def serial(datadir: Path) -> int:
    """The serial fs_mirror has applied, from DATADIR/sn (0 before the first INIT)."""
    try:
        return int((datadir / "sn").read_text().split(",")[1])
    except (FileNotFoundError, IndexError, ValueError):
        return 0


class Site:
    """One worker (mirrord + FTP in its namespace) and its fs_mirror on the backup host."""

    def __init__(self, hosts: Hosts, i: int, tmp: Path, secret: Path) -> None:
        self.src = tmp / f"w{i}" / "www"
        self.src.mkdir(parents=True)
        (self.src / "index.html").write_bytes(b"<p>hello</p>\n")
        addr = hosts.worker_addr(i)
        self.worker = Worker(
            tmp / f"w{i}" / "db",
            [self.src],
            bind=addr,
            port=PORT,
            prefix=hosts.prefix(hosts.workers[i]),
            options=["-o", f"ftp.port={FTP_PORT}", "-o", f"ftp.bind={addr}",
                     "-o", "ftp.user=mirror", "-o", f"ftp.password-from={secret}:ftp"],
        )  # fmt: skip
        self.backup = tmp / f"backup{i}"
        self.argv = [command("fs_mirror"), "-o", f"host={addr}", "-o", f"port={PORT}",
                     "-o", "fssync.type=ftp", "-o", f"fssync.port={FTP_PORT}",
                     "-o", "fssync.user=mirror", f"--password-from={secret}:ftp",
                     "-o", "reconnect.max=1", f"--datadir={self.backup}"]  # fmt: skip
        self.prefix = hosts.prefix(hosts.backup)
        self.client: Proc | None = None

    def start(self) -> None:
        self.worker.start()
        self.client = Proc(self.argv, prefix=self.prefix)

    def head(self) -> int:
        reply = request(os.path.join(self.worker.datadir, "mirrord.sock"), "status")
        return int(reply["head"])

    def stop(self) -> None:
        for proc in (self.client, self.worker.proc):
            if proc is not None and proc.popen.poll() is None:
                proc.stop()


@pytest.fixture
def hosts():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with private_hosts(2) as made:
        yield made


@pytest.fixture
def sites(hosts: Hosts, tmp_path: Path):
    secret = tmp_path / "secrets"
    secret.write_text("ftp link-cut-pass\n")
    os.chmod(secret, 0o600)
    made = [Site(hosts, i, tmp_path, secret) for i in range(2)]
    try:
        for site in made:
            site.start()
        for site in made:
            assert site.client is not None
            site.client.wait_line("init finished", 60)
        yield made
    finally:
        for site in made:
            site.stop()


def check_converged(sites: list[Site], timeout: float) -> None:
    for site in sites:
        wait_converged(site.src, site.backup, timeout)
        assert not tree_diff(site.src, mirror_of(site.backup, site.src))
        head = site.head()
        wait_for(lambda s=site, h=head: serial(s.backup) == h, 10, 0.05, f"sn at head {head}")


def check_resumed(site: Site) -> None:
    """One full sync ever; every lost connection came back with SN (resumed session)."""
    assert site.client is not None
    out = site.client.output()
    lost = site.client.count("connection to mirrord closed")
    failed = site.client.count("reconnecting to retry from serial")
    assert site.client.count("full sync:") == 1, out[-4000:]
    assert site.client.count("resumed session") >= lost + failed, out[-4000:]
    assert site.client.count("full resync") == 0, out[-4000:]
    assert_clean_output(site.client)


def intact(site: Site) -> list[str]:
    """Mirror files that are not whole stamped contents (the writer stamps every file)."""
    top = mirror_of(site.backup, site.src)
    bad = []
    for path in top.rglob("f*"):
        if path.is_file() and not stamp_intact(path.read_bytes()):
            bad.append(str(path))
    return bad


def test_link_cut_during_change_converges_and_resumes(hosts: Hosts, sites: list[Site]):
    """Each link in turn is cut for a few seconds while both workers change; the other worker's
    mirror keeps advancing meanwhile, and afterwards both mirrors equal their workers with one
    full sync each."""
    stop, counts = threading.Event(), {"ops": 0}
    writer = threading.Thread(
        target=churn,
        args=([s.src for s in sites], stop, counts),
        kwargs={"rate": RATE, "files": 300, "dirs": 6, "size": (0, 4096)},
        daemon=True,
    )
    writer.start()
    cuts = 0
    try:
        wait_for(lambda: counts["ops"] >= RATE, 10, 0.02, "the writer under way")
        for i in range(len(sites)):
            other = sites[1 - i]
            hosts.cut(i)
            cuts += 1
            try:
                # The cut lasts while the writer makes ~3 s of changes, and the other
                # worker's mirror must advance past a serial its worker reached after it.
                mark, past = counts["ops"], other.head()
                wait_for(lambda m=mark: counts["ops"] >= m + 3 * RATE, 20, 0.02, "changes")
                wait_for(lambda o=other, p=past: serial(o.backup) >= p, 20, 0.05,
                         "the other mirror advancing during the cut")  # fmt: skip
            finally:
                hosts.restore(i)
            mark = counts["ops"]
            wait_for(lambda m=mark: counts["ops"] >= m + RATE, 10, 0.02, "changes after")
    finally:
        stop.set()
        writer.join(10)
    print(f"\nlink cuts: {cuts}; writer ops: {counts}")
    check_converged(sites, 60)
    for site in sites:
        check_resumed(site)
        assert not intact(site)
    print("differences found: 0")


def test_link_cut_past_tcp_give_up_resumes(tmp_path: Path):
    """A cut long enough for the worker's TCP to give up on the connection (compressed here
    with net.ipv4.tcp_retries2=3 in our own namespaces): after the link is back fs_mirror
    must notice, reconnect, resume with SN and converge."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with private_hosts(1, {"net.ipv4.tcp_retries2": "3"}) as hosts:
        secret = tmp_path / "secrets"
        secret.write_text("ftp link-cut-pass\n")
        os.chmod(secret, 0o600)
        site = Site(hosts, 0, tmp_path, secret)
        try:
            site.start()
            assert site.client is not None
            site.client.wait_line("init finished", 60)
            sock = os.path.join(site.worker.datadir, "mirrord.sock")
            wait_for(lambda: request(sock, "status")["clients"], 10, 0.05, "client listed")
            hosts.cut(0)
            try:
                # Changes made during the cut: mirrord answers the parked NEXT with a
                # batch that cannot be delivered, and gives the connection up.
                for n in range(20):
                    (site.src / f"during{n}").write_bytes(b"x" * n)
                wait_for(lambda: not request(sock, "status")["clients"], 30, 0.1,
                         "mirrord giving up the connection")  # fmt: skip
            finally:
                hosts.restore(0)
            (site.src / "after").write_bytes(b"after the cut\n")
            wait_converged(site.src, site.backup, 60)
            check_resumed(site)
            assert site.client.count("resumed session") >= 1, site.client.output()[-3000:]
            print("\nlink cuts: 1 (past TCP give-up); differences found: 0")
        finally:
            if site.client is not None:
                print("--- fs_mirror ---\n" + site.client.output()[-3000:])
            site.stop()
