"""Contract 6 with the real daemons: ``fs_mirror --status``, ``-k status --json``, /metrics.

A real mirrord and fs_mirror on loopback, a real tree changed under them;
the status and the metrics are read from outside as an operator or a
Prometheus server would, and must move as records arrive.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import (
    Proc,
    Worker,
    assert_clean_output,
    command,
    start_fs_mirror,
    wait_converged,
)
from tests.helpers import free_port, wait_for
from tests.scrape import scrape, value


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def fs_mirror_status(datadir: Path) -> dict:
    done = run("fs_mirror", "--status", "--json", f"--datadir={datadir}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def k_status(worker: Worker) -> dict:
    done = run("mirrord", "-o", f"datadir={worker.datadir}", "-k", "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sn_serial(datadir: Path) -> int:
    return int((datadir / "sn").read_text().split(",")[1])


@pytest.fixture
def src(tmp_path: Path) -> Path:
    tree = tmp_path / "src" / "www"
    tree.mkdir(parents=True)
    (tree / "index.html").write_bytes(b"<h1>hello</h1>")
    return tree


@pytest.fixture
def cleanup() -> Iterator[list[Proc | Worker]]:
    running: list[Proc | Worker] = []
    yield running
    for thing in reversed(running):
        proc = thing.proc if isinstance(thing, Worker) else thing
        if proc is not None and proc.popen.poll() is None:
            proc.stop()


def test_fs_mirror_status_while_running_and_after_it_stopped(tmp_path, src, cleanup):
    """--status shows the running fs_mirror's serial moving with each batch, and after
    a clean stop the last one's state; --json has the contract's keys."""
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    cleanup.append(w)
    datadir = tmp_path / "mirror"
    client = start_fs_mirror(w, datadir)
    cleanup.append(client)
    client.wait_line("init finished", 30)

    first = wait_for(
        lambda: (s := fs_mirror_status(datadir))["serial"] == sn_serial(datadir) and s,
        10, 0.05, "status at the INIT's serial",
    )  # fmt: skip
    for key in ("session", "serial", "lag", "skipped", "last_error", "last_batch"):
        assert key in first, key
    assert first["state"] == "running" and first["running"] is True and first["connected"]
    assert first["session"] == (datadir / "sn").read_text().split(",")[0]
    assert first["lag"] == 0 and first["skipped"] == 0 and first["last_error"] is None
    assert first["last_batch"] is not None

    for i in range(5):
        (src / f"new{i}").write_bytes(b"x" * (100 + i))
    wait_converged(src, datadir)
    moved = wait_for(
        lambda: (s := fs_mirror_status(datadir))["serial"] >= first["serial"] + 5 and s,
        10, 0.05, "status past the new records",
    )  # fmt: skip
    assert moved["serial"] == sn_serial(datadir) == k_status(w)["head"]
    assert moved["records_applied"] >= first["records_applied"] + 5
    assert moved["bytes_fetched"] >= first["bytes_fetched"] + sum(100 + i for i in range(5))
    assert moved["last_batch"] >= first["last_batch"] and moved["lag"] == 0

    people = run("fs_mirror", "--status", f"--datadir={datadir}")
    assert people.returncode == 0, people.stderr
    assert "state:        running" in people.stdout
    assert f"serial:       {moved['serial']}" in people.stdout
    assert "lag:          0 records" in people.stdout

    assert client.stop() == 0
    assert_clean_output(client)
    after = fs_mirror_status(datadir)
    assert after["running"] is False and after["state"] == "stopped"
    assert after["serial"] == moved["serial"] and not after["connected"]
    people = run("fs_mirror", "--status", f"--datadir={datadir}")
    assert people.returncode == 0 and "state:        stopped" in people.stdout


def test_fs_mirror_status_counts_errors_while_mirrord_is_down(tmp_path, src, cleanup):
    """With mirrord gone, --status says fs_mirror is not connected and names the error."""
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    cleanup.append(w)
    datadir = tmp_path / "mirror"
    client = start_fs_mirror(w, datadir)
    cleanup.append(client)
    client.wait_line("init finished", 30)
    assert w.stop() == 0
    down = wait_for(
        lambda: (s := fs_mirror_status(datadir))["errors"] > 0 and s, 15, 0.05, "an error"
    )
    assert down["connected"] is False and "no connection to mirrord" in down["last_error"]
    assert "not connected" in run("fs_mirror", "--status", f"--datadir={datadir}").stdout


def test_fs_mirror_status_of_a_datadir_where_none_ran(tmp_path):
    """No status file: a clear one-line message and exit 1; host and fssync.type not needed."""
    empty = tmp_path / "never"
    empty.mkdir(mode=0o700)
    for extra in ((), ("--json",)):
        done = run("fs_mirror", "--status", *extra, f"--datadir={empty}")
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1 and "no fs_mirror has run on" in done.stderr
        assert str(empty) in done.stderr and done.stdout == ""
    assert not (tmp_path / "absent").exists()
    done = run("fs_mirror", "--status", f"--datadir={tmp_path / 'absent'}")
    assert done.returncode == 1 and not (tmp_path / "absent").exists()  # never creates it


def test_k_status_json_has_the_contract_keys(tmp_path, src, cleanup):
    """-k status --json: session, head, oldest, watches, polled, overflows, and clients
    each with peer, serial and lag (fs_mirror connected)."""
    w = Worker(tmp_path / "mirrord", [src])
    w.start()
    cleanup.append(w)
    client = start_fs_mirror(w, tmp_path / "mirror")
    cleanup.append(client)
    client.wait_line("init finished", 30)
    status = wait_for(lambda: (s := k_status(w))["clients"] and s, 10, 0.05, "a client")
    for key in ("session", "head", "oldest", "watches", "polled", "overflows", "clients"):
        assert key in status, key
    assert isinstance(status["overflows"], int) and status["watches"] >= 1
    (one,) = status["clients"]
    assert one["peer"].startswith("127.0.0.1:")
    assert {"peer", "serial", "lag", "lag_seconds"} <= set(one)


def test_metrics_from_both_daemons_over_http(tmp_path, src, cleanup):
    """/metrics on loopback from mirrord and fs_mirror: Prometheus text whose values
    follow a change in the source tree."""
    mport, fport = free_port(), free_port()
    w = Worker(tmp_path / "mirrord", [src], options=["-o", f"metrics.port={mport}"])
    proc = w.start()
    cleanup.append(w)
    proc.wait_line(f"metrics on http://127.0.0.1:{mport}/metrics")
    datadir = tmp_path / "mirror"
    client = start_fs_mirror(w, datadir, "-o", f"metrics.port={fport}")
    cleanup.append(client)
    client.wait_line("init finished", 30)

    m, types, content_type = scrape("127.0.0.1", mport)
    assert content_type.startswith("text/plain; version=0.0.4")
    head = value(m, "mirrord_head_serial")
    assert head == k_status(w)["head"]
    for name in ("mirrord_records_total", "mirrord_overflows_total"):
        assert types[name] == "counter", name
    assert types["mirrord_head_serial"] == types["mirrord_watches"] == "gauge"
    assert value(m, "mirrord_watches") >= 1 and value(m, "mirrord_overflows_total") == 0
    peers = wait_for(
        lambda: [p for (n, labels) in scrape("127.0.0.1", mport)[0]
                 if n == "mirrord_client_lag_records" for _, p in labels],
        10, 0.05, "the client's lag sample",
    )  # fmt: skip
    assert len(peers) == 1 and peers[0].startswith("127.0.0.1:")

    f, ftypes, _ = scrape("127.0.0.1", fport)
    wait_for(lambda: value(scrape("127.0.0.1", fport)[0], "fs_mirror_serial") == head, 10, 0.05)
    f = scrape("127.0.0.1", fport)[0]
    for name in ("records_applied", "bytes_fetched", "skipped", "errors"):
        assert ftypes[f"fs_mirror_{name}_total"] == "counter", name
    assert value(f, "fs_mirror_lag_records") == 0 and value(f, "fs_mirror_skipped_total") == 0
    applied, fetched = (
        value(f, "fs_mirror_records_applied_total"),
        value(f, "fs_mirror_bytes_fetched_total"),
    )

    (src / "grown").write_bytes(b"y" * 4096)
    wait_converged(src, datadir)
    m2 = wait_for(
        lambda: (s := scrape("127.0.0.1", mport)[0]) and value(s, "mirrord_head_serial") > head
        and s, 10, 0.05, "mirrord's head to grow",
    )  # fmt: skip
    assert value(m2, "mirrord_records_total") >= value(m, "mirrord_records_total") + 1
    new_head = value(m2, "mirrord_head_serial")
    f2 = wait_for(
        lambda: (s := scrape("127.0.0.1", fport)[0]) and value(s, "fs_mirror_serial") == new_head
        and s, 10, 0.05, "fs_mirror's serial to follow",
    )  # fmt: skip
    assert value(f2, "fs_mirror_records_applied_total") > applied
    assert value(f2, "fs_mirror_bytes_fetched_total") >= fetched + 4096
    lag = wait_for(
        lambda: [v for (n, _), v in scrape("127.0.0.1", mport)[0].items()
                 if n == "mirrord_client_lag_records"] == [0.0],
        10, 0.05, "the client to be in step",
    )  # fmt: skip
    assert lag
    seconds = [v for (n, _), v in scrape("127.0.0.1", mport)[0].items()
               if n == "mirrord_client_lag_seconds"]  # fmt: skip
    assert seconds == [0.0]
    assert client.stop() == 0 and w.stop() == 0
    assert_clean_output(client)
    assert_clean_output(proc)


@pytest.mark.parametrize("name", ["mirrord", "fs_mirror"])
@pytest.mark.parametrize(
    "option, key",
    [
        ("metrics.port=70000", "metrics.port"),
        ("metrics.port=web", "metrics.port"),
        ("metrics.port=-1", "metrics.port"),
        ("metrics.bind=localhost:9", "metrics.bind"),
    ],
)
def test_a_bad_metrics_value_is_refused_naming_the_key(tmp_path, name, option, key):
    """A bad metrics.port or metrics.bind: exit 2, one line naming the key."""
    if name == "mirrord":
        argv = ["mirrord", "-o", f"datadir={tmp_path}", "-o", option]
    else:
        argv = ["fs_mirror", "-o", "host=127.0.0.1", "-o", "fssync.type=report",
                f"--datadir={tmp_path / 'm'}", "-o", option]  # fmt: skip
    done = run(*argv)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and key in done.stderr, done.stderr


def test_a_metrics_port_in_use_stops_each_daemon_naming_the_key(tmp_path, src):
    """A taken metrics.port: exit 1 with a line saying to choose another metrics.port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        w = Worker(tmp_path / "mirrord", [src], options=["-o", f"metrics.port={port}"])
        done = subprocess.run(w.argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done
        assert "metrics.port" in done.stderr.strip().splitlines()[-1], done.stderr
        done = run("fs_mirror", "-o", "host=127.0.0.1", "-o", f"port={free_port()}",
                   "-o", "fssync.type=report", f"--datadir={tmp_path / 'm'}",
                   "-o", f"metrics.port={port}")  # fmt: skip
        assert done.returncode == 1, done
        assert "metrics.port" in done.stderr.strip().splitlines()[-1], done.stderr
