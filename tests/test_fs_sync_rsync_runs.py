"""rsync runs against a real daemon: split batches, the standby run, its failures, the stop."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fs_sync.interface import FetchItem, Outcome
from fs_sync.rsync import CHECKED_RUN_MAX, RsyncFetcher
from fs_sync.rsyncrun import Finished, RsyncRun
from tests.fetcher_contract import private_reactor, run_deferred
from tests.helpers import wait_for
from tests.test_fs_sync_rsync import PASSWORD, USER, Daemon
from tests.test_fs_sync_rsync import daemon as daemon  # the module-scoped fixture


@contextmanager
def _fetcher(
    daemon: Daemon, cls: type[RsyncFetcher] = RsyncFetcher, **options: Any
) -> Iterator[tuple[Any, RsyncFetcher]]:
    """A fetcher against ``daemon`` on a reactor of its own; closed (standby too) at the end."""
    with private_reactor() as reactor:
        fetcher = cls(
            "127.0.0.1", daemon.port, USER, PASSWORD, b"/mirror", daemon.staging, reactor, **options
        )
        try:
            yield reactor, fetcher
        finally:
            run_deferred(reactor, fetcher.close())


def test_batch_split_into_runs_keeps_order_and_outcomes(daemon: Daemon, tmp_path: Path) -> None:
    """Seven items over runs of two: each file installed, the missing one VANISHED, in order."""
    served = daemon.served + b"/runs"
    os.makedirs(served, exist_ok=True)
    names = [f"f{i}".encode() for i in range(7)]
    for name in names:
        if name != b"f3":
            with open(served + b"/" + name, "wb") as f:
                f.write(b"content " + name)
    dst = os.fsencode(tmp_path)
    items = [FetchItem(b"/runs/" + name, dst + b"/" + name) for name in names]
    with _fetcher(daemon, run_max=2) as (reactor, fetcher):
        results = run_deferred(reactor, fetcher.fetch(items))
    assert [r[0] for r in results] == items
    outcomes = [r[1] for r in results]
    assert outcomes[3] is Outcome.VANISHED
    assert outcomes[:3] + outcomes[4:] == [Outcome.DONE] * 6
    for name in names:
        if name != b"f3":
            with open(dst + b"/" + name, "rb") as f:
                assert f.read() == b"content " + name
    assert os.listdir(daemon.staging) == []


def _children() -> list[tuple[int, str, str]]:
    """(pid, state, command) of this test process's child processes, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name_end = stat.rindex(b")")
        state, ppid = stat[name_end + 2 :].split()[:2]
        if int(ppid) == os.getpid():
            name = stat[stat.index(b"(") + 1 : name_end].decode()
            found.append((int(entry), state.decode(), name))
    return found


def _write(path: bytes, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)


def _standby_pid(fetcher: RsyncFetcher) -> int:
    """The pid of the standby run the fetcher started after its last batch."""
    wait_for(lambda: fetcher._standby is not None, message="a standby rsync")
    assert fetcher._standby is not None
    return fetcher._standby.proc.pid


def test_next_batch_uses_the_standby_started_before_it(daemon: Daemon, tmp_path: Path) -> None:
    """After a batch, an rsync waits for the next; that one serves it, and a new one waits."""
    served = daemon.served + b"/standby"
    os.makedirs(served, exist_ok=True)
    dst = os.fsencode(tmp_path)
    with _fetcher(daemon) as (reactor, fetcher):
        for round_ in range(3):
            _write(served + b"/f", b"round %d" % round_)
            item = FetchItem(b"/standby/f", dst + b"/f")
            if round_:
                waiting = _standby_pid(fetcher)
            [result] = run_deferred(reactor, fetcher.fetch([item]))
            assert result[1] is Outcome.DONE
            with open(dst + b"/f", "rb") as f:
                assert f.read() == b"round %d" % round_
            if round_:
                assert _standby_pid(fetcher) != waiting
    assert os.listdir(daemon.staging) == []


def test_dead_standby_is_replaced_by_a_fresh_run(daemon: Daemon, tmp_path: Path) -> None:
    """A standby that died while waiting (killed, timed out) costs nothing: a fresh run serves."""
    served = daemon.served + b"/dead"
    os.makedirs(served, exist_ok=True)
    dst = os.fsencode(tmp_path)
    with _fetcher(daemon) as (reactor, fetcher):
        _write(served + b"/f", b"one")
        run_deferred(reactor, fetcher.fetch([FetchItem(b"/dead/f", dst + b"/f")]))
        os.kill(_standby_pid(fetcher), signal.SIGKILL)
        _write(served + b"/f", b"two")
        [result] = run_deferred(reactor, fetcher.fetch([FetchItem(b"/dead/f", dst + b"/f")]))
        assert result[1] is Outcome.DONE
        with open(dst + b"/f", "rb") as f:
            assert f.read() == b"two"
    assert os.listdir(daemon.staging) == []


def test_standby_failing_on_its_list_is_retried_fresh(daemon: Daemon, tmp_path: Path) -> None:
    """A standby alive but failing once given names (connection cut): a fresh run retries."""
    served = daemon.served + b"/retry"
    os.makedirs(served, exist_ok=True)
    dst = os.fsencode(tmp_path)
    count = tmp_path / "count"
    shim = tmp_path / "rsync-shim"
    # the second rsync started is the first standby: it takes its list, then fails
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --help ]; then exec rsync "$@"; fi\n'  # the probe is no run
        f'n=$(($(cat "{count}" 2>/dev/null || echo 0) + 1)); echo $n > "{count}"\n'
        'if [ "$n" = 2 ]; then cat >/dev/null\n'
        "  echo 'rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]' >&2\n"
        "  exit 12; fi\n"
        'exec rsync "$@"\n'
    )
    shim.chmod(0o755)
    with _fetcher(daemon, rsync=str(shim)) as (reactor, fetcher):
        _write(served + b"/f", b"one")
        run_deferred(reactor, fetcher.fetch([FetchItem(b"/retry/f", dst + b"/f")]))
        _standby_pid(fetcher)
        _write(served + b"/f", b"two")
        [result] = run_deferred(reactor, fetcher.fetch([FetchItem(b"/retry/f", dst + b"/f")]))
        assert result[1] is Outcome.DONE
        with open(dst + b"/f", "rb") as f:
            assert f.read() == b"two"
        assert count.read_text().strip() in ("3", "4")  # the retry (and a new standby)
    assert os.listdir(daemon.staging) == []


def test_close_leaves_no_process_behind(daemon: Daemon, tmp_path: Path) -> None:
    """Stopping with a standby waiting and a run still exiting: no child, no zombie, no staging."""
    served = daemon.served + b"/close"
    os.makedirs(served, exist_ok=True)
    _write(served + b"/f", b"x")
    dst = os.fsencode(tmp_path)
    before = _children()  # the daemon
    with _fetcher(daemon) as (reactor, fetcher):
        run_deferred(reactor, fetcher.fetch([FetchItem(b"/close/f", dst + b"/f")]))
        _standby_pid(fetcher)
        assert _children() != before
    assert _children() == before  # closed by _fetcher
    assert os.listdir(daemon.staging) == []


class _InstallAfterExit(RsyncFetcher):
    """Installs a run's files only once the rsync that staged them has been reaped."""

    def _complete(self, run: RsyncRun, listing: bytes, *rest: Any) -> Finished | None:
        self.last = run
        return super()._complete(run, listing, *rest)

    def _settle(self, *args: Any) -> None:
        wait_for(lambda: self.last.proc.returncode is not None, message="rsync reaped")
        super()._settle(*args)


def test_staging_outlives_rsync_until_installed(daemon: Daemon, tmp_path: Path) -> None:
    """A run ended early exits while its files are still being installed: none is lost."""
    served = daemon.served + b"/outlive"
    os.makedirs(served, exist_ok=True)
    names = [b"f%d" % i for i in range(20)]
    for name in names:
        _write(served + b"/" + name, b"content " + name)
    dst = os.fsencode(tmp_path)
    items = [FetchItem(b"/outlive/" + name, dst + b"/" + name) for name in names]
    with _fetcher(daemon, _InstallAfterExit) as (reactor, fetcher):
        for _ in range(2):  # a fresh run, then the standby
            results = run_deferred(reactor, fetcher.fetch(items))
            assert [r[1] for r in results] == [Outcome.DONE] * len(names)
    for name in names:
        with open(dst + b"/" + name, "rb") as f:
            assert f.read() == b"content " + name
    assert os.listdir(daemon.staging) == []


def _logging_shim(tmp_path: Path, help_text: str | None) -> tuple[Path, Path]:
    """An rsync that logs each argument vector; with `help_text`, an older rsync's --help."""
    log = tmp_path / "argv.log"
    shim = tmp_path / "rsync-logging"
    fake_help = (
        f'if [ "$1" = --help ]; then printf "%s\\n" "{help_text}"; exit 0; fi\n'
        'for a in "$@"; do [ "$a" = --trust-sender ] || continue\n'
        '  echo "rsync: --trust-sender: unknown option" >&2; exit 1; done\n'
        if help_text is not None
        else ""
    )
    shim.write_text(f'#!/bin/sh\n{fake_help}echo "$*" >> "{log}"\nexec rsync "$@"\n')
    shim.chmod(0o755)
    return shim, log


def test_rsync_that_checks_each_name_is_told_to_trust_the_daemon(
    daemon: Daemon, tmp_path: Path
) -> None:
    """rsync >= 3.2.5 checks each listed name against the list it sent, O(names^2) in CPU:
    the fetcher turns that off (its staging is private, only asked names are installed)."""
    served = daemon.served + b"/trust"
    os.makedirs(served, exist_ok=True)
    _write(served + b"/f", b"x")
    shim, log = _logging_shim(tmp_path, None)
    dst = os.fsencode(tmp_path)
    with _fetcher(daemon, rsync=str(shim)) as (reactor, fetcher):
        [result] = run_deferred(reactor, fetcher.fetch([FetchItem(b"/trust/f", dst + b"/f")]))
        assert result[1] is Outcome.DONE
    runs = [run for run in log.read_text().splitlines() if "--files-from=-" in run.split()]
    assert runs and all("--trust-sender" in run.split() for run in runs)


def test_rsync_without_the_option_is_not_given_it(daemon: Daemon, tmp_path: Path) -> None:
    """An rsync whose --help lacks --trust-sender (older, it would refuse it) runs without it."""
    served = daemon.served + b"/notrust"
    os.makedirs(served, exist_ok=True)
    _write(served + b"/f", b"x")
    shim, log = _logging_shim(tmp_path, "rsync  version 3.1.3  protocol version 31")
    dst = os.fsencode(tmp_path)
    with _fetcher(daemon, rsync=str(shim)) as (reactor, fetcher):
        [result] = run_deferred(reactor, fetcher.fetch([FetchItem(b"/notrust/f", dst + b"/f")]))
        assert result[1] is Outcome.DONE
        assert fetcher.run_limit() == CHECKED_RUN_MAX
    runs = [run for run in log.read_text().splitlines() if "--files-from=-" in run.split()]
    assert runs and not any("--trust-sender" in run.split() for run in runs)


class _SeesEarly(RsyncFetcher):
    """Notes which members were installed while their run still went on."""

    early: set[int]

    def _settle(self, *args: Any) -> None:
        installer = args[-1]
        self.early = set(installer.done) if installer is not None else set()
        super()._settle(*args)


def test_files_are_installed_while_their_run_goes_on(daemon: Daemon, tmp_path: Path) -> None:
    """A file staged by rsync is installed at once, not after the run: each lands once, whole,
    a name asked twice in both places."""
    served = daemon.served + b"/early"
    os.makedirs(served + b"/sub", exist_ok=True)
    names = [b"f%d" % i for i in range(30)] + [b"sub/g"]
    for name in names:
        _write(served + b"/" + name, b"content " + name)
    dst = os.fsencode(tmp_path)
    items = [FetchItem(b"/early/" + name, dst + b"/" + name.replace(b"/", b"-")) for name in names]
    items.append(FetchItem(b"/early/f0", dst + b"/again"))
    with _fetcher(daemon, _SeesEarly) as (reactor, fetcher):
        results = run_deferred(reactor, fetcher.fetch(items))
        early = fetcher.early
    assert [r[1] for r in results] == [Outcome.DONE] * len(items)
    assert early and early <= set(range(len(names)))  # the copy for /again comes after
    for item in items:
        with open(item.local, "rb") as f:
            assert f.read() == b"content " + item.remote.removeprefix(b"/early/")
    assert os.listdir(daemon.staging) == []
