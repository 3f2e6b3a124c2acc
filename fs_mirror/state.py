"""The ``sn`` file: where this mirror stands in the worker's log, and who owns it.

``DATADIR/sn`` holds ``session,serial`` (one text line): the last serial whose
records are fully applied.  It is replaced atomically (temp file, fsync,
rename, fsync of the directory) so a crash at any instant leaves either the
old or the new line, never a torn one.

Two fs_mirror processes on one datadir would corrupt each other's mirror, so
the running one holds exclusive ``fcntl`` locks for its whole life:

* ``DATADIR/.fs_mirror.lock``: a stable file, locked first and holding our
  pid, so a second process can say who is in the way;
* ``DATADIR/sn`` itself: each new sn file is locked *before* it is renamed
  into place and the previous one is released only afterwards, so whoever
  tests the lock on ``sn`` (the contract's observable) finds it taken.

``fcntl`` locks belong to the process and vanish when *any* descriptor of the
file is closed, so this module never opens ``sn`` or the lock file a second
time while it holds them: ``load`` reads through the held descriptor.

These names, and the staging directory ``DATADIR/.fs_mirror.d`` (sn temp
files, the INIT seen-set, rsync's staging area), live beside the mirrored
tree, so worker paths ``/sn``, ``/.fs_mirror.lock``, ``/.fs_mirror.d/...``
and ``/.fs_mirror-staging/...`` cannot be mirrored: ``fs_mirror.apply``
refuses them as hostile, and rotation and the INIT sweep skip them (see ``RESERVED``).
"""

from __future__ import annotations

import fcntl
import os

from cmdconfig.atomic import replace_file, replace_locked

SN_NAME = b"sn"
LOCK_NAME = b".fs_mirror.lock"
STAGING_NAME = b".fs_mirror.d"
APPLIED_NAME = b"applied"  # in STAGING_NAME: see State.save_applied
#: Where older fs_mirror versions let the rsync backend stage files; today it
#: stages in STAGING_NAME/rsync (fs_mirror.backend), but a mirror made by an
#: older run may still hold this directory, so the name stays reserved.
RSYNC_STAGING_NAME = b".fs_mirror-staging"
#: Top-level names in DATADIR that belong to fs_mirror, not to the mirror.
RESERVED = frozenset({SN_NAME, LOCK_NAME, STAGING_NAME, RSYNC_STAGING_NAME})


class DatadirNotPrivate(Exception):
    """DATADIR grants group or others access; the message says what to do."""


def ensure_private_datadir(datadir: bytes | str) -> None:
    """Create DATADIR with mode 0700, or refuse one that group or others can enter.

    The mirror holds set-user-ID files and other users' private files with
    their modes: any access to the datadir would let a local user reach
    them (contract 5).
    """
    datadir = os.fsencode(datadir)
    os.makedirs(datadir, mode=0o700, exist_ok=True)
    mode = os.stat(datadir).st_mode & 0o777
    if mode & 0o077:
        raise DatadirNotPrivate(
            f"{os.fsdecode(datadir)} has mode {mode:04o}: the mirror holds other users'"
            f" private and set-user-ID files, so it must be 0700 (chmod 700 {os.fsdecode(datadir)})"
        )


class StateLocked(Exception):
    """Another process holds the datadir; the message says which pid."""


class StateCorrupt(Exception):
    """The sn file exists but does not hold ``session,serial``."""


def _lock(fd: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _fsync_dir(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_sn(text: bytes) -> tuple[str, int]:
    """Parse ``session,serial``; raise StateCorrupt on anything else."""
    try:
        session, serial = text.decode("ascii").strip().split(",")
        number = int(serial)
    except (UnicodeDecodeError, ValueError) as e:
        raise StateCorrupt(f"bad sn content {text[:80]!r}") from e
    if not session or number < 0 or not session.isalnum():
        raise StateCorrupt(f"bad sn content {text[:80]!r}")
    return session, number


class State:
    """The locked sn file of one datadir.  ``acquire`` before anything else."""

    def __init__(self, datadir: bytes | str) -> None:
        self.datadir = os.fsencode(datadir)
        self.sn_path = os.path.join(self.datadir, SN_NAME)
        self.lock_path = os.path.join(self.datadir, LOCK_NAME)
        self.staging = os.path.join(self.datadir, STAGING_NAME)
        self._lock_fd: int | None = None
        self._sn_fd: int | None = None

    # -- ownership -------------------------------------------------------
    def acquire(self) -> None:
        """Take the datadir or raise StateLocked naming the holder's pid."""
        os.makedirs(self.datadir, mode=0o700, exist_ok=True)
        os.makedirs(self.staging, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise StateLocked(
                f"another fs_mirror holds {os.fsdecode(self.sn_path)} (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            sn_fd = os.open(self.sn_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            _lock(sn_fd)
        except OSError:
            os.close(sn_fd)
            self.release()
            raise StateLocked(
                f"another process holds {os.fsdecode(self.sn_path)}; stop it first"
            ) from None
        self._sn_fd = sn_fd

    def release(self) -> None:
        """Drop both locks (process exit does the same)."""
        for name in ("_sn_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    # -- the sn line ---------------------------------------------------------
    def load(self) -> tuple[str, int] | None:
        """The saved ``(session, serial)``, or None when there is none yet."""
        self._require()
        if self._sn_fd is None:
            return None
        text = os.pread(self._sn_fd, 256, 0)
        if not text.strip():
            return None
        return parse_sn(text)

    def save(self, session: str, serial: int) -> None:
        """Durably replace sn with ``session,serial`` and keep it locked."""
        self._require()
        line = f"{session},{serial}\n".encode("ascii")
        # The temporary file lives in the staging directory: in DATADIR its
        # name would be a worker path of the mirror.
        fd = replace_locked(self.sn_path, line, 0o644, tmpdir=self.staging)
        old, self._sn_fd = self._sn_fd, fd
        if old is not None:
            os.close(old)

    # -- how far the disk changes of an unsaved batch got ----------------------
    @property
    def applied_path(self) -> bytes:
        return os.path.join(self.staging, APPLIED_NAME)

    def load_applied(self) -> tuple[str, int] | None:
        """``(session, serial)`` up to which records changed the disk, or None.

        Written before a batch's fetch (``save_applied``); past the saved
        serial it says which records a killed run already applied.
        """
        try:
            with open(self.applied_path, "rb") as f:
                return parse_sn(f.read())
        except (FileNotFoundError, StateCorrupt):
            return None

    def save_applied(self, session: str, serial: int) -> None:
        """Say that records up to ``serial`` changed the disk (no fsync: see ``replace_file``)."""
        replace_file(self.applied_path, f"{session},{serial}\n".encode("ascii"), durable=False)

    def forget(self) -> None:
        """Remove sn (the next start does a full INIT); keeps the lock file."""
        self._require()
        if self._sn_fd is not None:
            os.unlink(self.sn_path)
            os.close(self._sn_fd)
            self._sn_fd = None
            _fsync_dir(self.datadir)

    def _require(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("State.acquire() first")
