"""fs_mirror.state: the locked sn file, the INIT seen-set and the sweep.

Lock tests use real subprocesses: fcntl locks belong to a process, so a
second locker inside this process would not be refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fs_mirror.state import State, StateCorrupt, StateLocked
from fs_mirror.sweep import InitSweep, SeenSet, TooManyDeletes, sweep_unseen
from tests.helpers import wait_for

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


HOLD = """
    import sys
    from fs_mirror.state import State
    s = State(sys.argv[1]); s.acquire(); s.save("ab12", 7)
    print("held", flush=True); sys.stdin.read()
"""

TRY = """
    import sys
    from fs_mirror.state import State, StateLocked
    try:
        State(sys.argv[1]).acquire()
    except StateLocked as e:
        print(e); sys.exit(3)
    print("acquired")
"""


def test_save_and_load_round_trip(tmp_path):
    """save writes session,serial to DATADIR/sn and load reads it back, also after release."""
    s = State(str(tmp_path))
    s.acquire()
    assert s.load() is None
    s.save("0123456789abcdef0123456789abcdef", 41)
    s.save("0123456789abcdef0123456789abcdef", 42)
    assert s.load() == ("0123456789abcdef0123456789abcdef", 42)
    assert (tmp_path / "sn").read_text() == "0123456789abcdef0123456789abcdef,42\n"
    s.release()
    again = State(str(tmp_path))
    again.acquire()
    assert again.load() == ("0123456789abcdef0123456789abcdef", 42)
    again.release()


def test_corrupt_sn_is_reported(tmp_path):
    """A garbled sn file raises StateCorrupt rather than resuming from nonsense."""
    (tmp_path / "sn").write_text("not a position\n")
    s = State(str(tmp_path))
    s.acquire()
    with pytest.raises(StateCorrupt):
        s.load()
    s.release()


def test_second_fs_mirror_refused_with_pid(tmp_path):
    """While one process holds the datadir, another is refused, told the holder's pid."""
    holder = python(HOLD, str(tmp_path), stdin=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        other = python(TRY, str(tmp_path))
        out, _ = other.communicate(timeout=30)
        assert other.returncode == 3
        assert f"another fs_mirror holds {tmp_path}/sn (pid {holder.pid})" in out
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    after = python(TRY, str(tmp_path))
    out, _ = after.communicate(timeout=30)
    assert after.returncode == 0 and "acquired" in out


def test_sn_file_itself_is_locked(tmp_path):
    """A plain fcntl lock attempt on DATADIR/sn fails while fs_mirror runs, also after saves."""
    s = State(str(tmp_path))
    s.acquire()
    s.save("aa", 1)
    s.save("aa", 2)
    probe = python(
        """
        import fcntl, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print("locked"); sys.exit(0)
        print("free")
        """,
        str(tmp_path / "sn"),
    )
    out, _ = probe.communicate(timeout=30)
    s.release()
    assert out.strip() == "locked"


def test_sigkill_mid_save_leaves_valid_sn(tmp_path):
    """Killing a process in a tight save loop leaves sn holding a whole position."""
    loop = python(
        """
        import sys
        from fs_mirror.state import State
        s = State(sys.argv[1]); s.acquire()
        n = 0
        while True:
            n += 1
            s.save("c0ffee", n)
            if n == 20:
                print("saving", flush=True)
        """,
        str(tmp_path),
    )
    assert loop.stdout.readline().strip() == "saving"
    os.kill(loop.pid, signal.SIGKILL)
    loop.wait(timeout=30)
    s = State(str(tmp_path))
    s.acquire()
    session, serial = s.load()
    assert session == "c0ffee" and serial >= 20
    s.release()


def test_seen_set_adds_ancestors(tmp_path):
    """SeenSet holds the paths it was given and all their ancestors."""
    seen = SeenSet(os.fsencode(tmp_path / "seen.db"))
    seen.add([b"/var/www/html", b"/var/www/html/a", b"/srv/x/y"])
    for p in (b"/var", b"/var/www", b"/var/www/html/a", b"/srv", b"/srv/x", b"/srv/x/y"):
        assert p in seen
    assert b"/var/www/other" not in seen and b"/srv/x/y/z" not in seen
    seen.close()
    assert not os.path.exists(tmp_path / "seen.db")


def test_sweep_removes_only_unseen(tmp_path):
    """sweep_unseen deletes entries INIT did not name, keeps state files and symlink targets."""
    data = tmp_path / "data"
    (data / "var/www/html").mkdir(parents=True)
    (data / "var/www/html/keep").write_text("k")
    (data / "var/www/html/stale").write_text("s")
    (data / "var/old/deep").mkdir(parents=True)
    (data / "sn").write_text("x,1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("p")
    (data / "var/www/link").symlink_to(outside)
    seen = SeenSet(os.fsencode(tmp_path / "seen.db"))
    seen.add([b"/var/www/html", b"/var/www/html/keep"])
    removed: list[bytes] = []
    count = sweep_unseen(os.fsencode(data), seen, removed.append)
    seen.close()
    assert sorted(removed) == [b"/var/old", b"/var/www/html/stale", b"/var/www/link"]
    assert count == 3
    assert (data / "var/www/html/keep").exists() and (data / "sn").exists()
    assert (outside / "precious").read_text() == "p"


def test_state_requires_acquire(tmp_path):
    """Using the sn file without holding the lock is a programming error."""
    with pytest.raises(RuntimeError):
        State(str(tmp_path)).save("a", 1)


def test_wait_helper_used_for_lock_release(tmp_path):
    """After the holder exits, the datadir can be taken again."""
    holder = python(HOLD, str(tmp_path), stdin=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "held"
    s = State(str(tmp_path))
    holder.stdin.close()
    holder.wait(timeout=30)

    def take() -> bool:
        try:
            s.acquire()
        except StateLocked:
            return False
        return True

    wait_for(take, message="lock to be free")
    assert s.load() == ("ab12", 7)
    s.release()


def _mirror_with(tmp_path, names: list[str]) -> bytes:
    data = tmp_path / "mirror"
    for name in names:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(name)
    return os.fsencode(data)


def test_sweep_refuses_to_delete_more_than_its_share(tmp_path):
    """An INIT that names almost nothing the mirror has deletes nothing and says what it would."""
    data = _mirror_with(tmp_path, [f"srv/f{i}" for i in range(20)])
    seen = SeenSet(os.fsencode(tmp_path / "seen.db"))
    seen.add([b"/srv/f0"])
    with pytest.raises(TooManyDeletes) as refused:
        sweep_unseen(data, seen, max_delete=0.10)
    assert refused.value.doomed == 19 and refused.value.total == 21
    assert "would delete 19 of the 21 entries" in str(refused.value)
    assert "init.max-delete=100%" in str(refused.value)
    assert len(os.listdir(data + b"/srv")) == 20  # the mirror is kept as it is


def test_sweep_within_its_share_deletes(tmp_path):
    """Under the limit the sweep goes ahead; a whole unseen directory counts with its entries."""
    data = _mirror_with(tmp_path, [f"srv/f{i}" for i in range(20)] + ["old/a", "old/b"])
    seen = SeenSet(os.fsencode(tmp_path / "seen.db"))
    seen.add([b"/srv/f%d" % i for i in range(20)])
    assert sweep_unseen(data, seen, max_delete=0.15) == 1  # /old: 3 of 24 entries
    assert not os.path.exists(data + b"/old")
    with pytest.raises(TooManyDeletes):
        data2 = _mirror_with(tmp_path / "2", [f"srv/f{i}" for i in range(20)] + ["old/a", "old/b"])
        sweep_unseen(data2, seen, max_delete=0.10)


def test_sweep_keeps_what_is_below_an_unreadable_directory(tmp_path):
    """mirrord could not read /srv/locked: what the mirror has below it stays."""
    data = _mirror_with(tmp_path, ["srv/locked/a", "srv/locked/deep/b", "srv/gone"])
    seen = SeenSet(os.fsencode(tmp_path / "seen.db"))
    seen.add([b"/srv/locked"])
    assert sweep_unseen(data, seen, protected={b"/srv/locked"}) == 1  # only /srv/gone
    assert os.path.exists(data + b"/srv/locked/a") and os.path.exists(data + b"/srv/locked/deep/b")


def test_an_init_into_an_empty_mirror_keeps_no_seen_set_and_removes_nothing(tmp_path):
    """Everything in a mirror that held nothing at the INIT's start came from it."""
    datadir = os.fsencode(tmp_path / "mirror")
    staging = datadir + b"/.fs_mirror.d"
    os.makedirs(staging)
    sweep = InitSweep(datadir, staging)
    sweep.begin()
    os.makedirs(datadir + b"/srv/www")  # what the stream makes
    sweep.mark([b"/srv", b"/srv/www"])
    assert not os.path.exists(sweep.path)
    assert sweep.finish() == 0
    assert os.path.isdir(datadir + b"/srv/www")
    # a second INIT, into the mirror the first one made, sweeps as always
    sweep.begin()
    sweep.mark([b"/srv"])
    assert sweep.finish() == 1
    assert os.listdir(datadir + b"/srv") == []
