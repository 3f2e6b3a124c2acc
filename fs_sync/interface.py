"""The one seam between fs_mirror and the ways of fetching a file's content.

fs_mirror knows only this module: it hands a batch of FWRITE paths to
whatever `Fetcher` the registry built and gets one outcome per item back.
Outcomes are values, not exceptions, so one bad file never fails a batch.

Two kinds of trouble are not about one file, and a fetcher fails the whole
`fetch` Deferred with them instead (the client keeps its place in the log
and retries the same batch with backoff; neither is ever a reason for a new
INIT):

- `BackendUnavailable`: the backend as a whole cannot serve now (connection
  refused or cut, authentication refused, the transfer program missing);
  `auth` says whether it is a credentials problem, which needs the operator.
- `LocalDiskError` (an `OSError`): the mirror's own disk refused a write
  (full, read-only, over quota); fs_mirror says so and waits for space.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class FetchItem:
    """One file to fetch: the worker's absolute path and the final local path."""

    remote: bytes
    local: bytes


class Outcome(enum.Enum):
    """What became of one item."""

    DONE = "done"  # `local` now holds the remote content (renamed in place)
    VANISHED = "vanished"  # the remote file is gone; a later record will say why
    NOT_A_FILE = "not-a-file"  # the remote path is a directory or special file
    UNSUPPORTED = "unsupported"  # the backend cannot carry this name (FTP: CR or LF)
    FAILED = "failed"  # this one file could not be had (permissions on the worker, ...)


Result = tuple[FetchItem, Outcome, str]

#: errno values meaning the mirror's disk cannot take writes now.
LOCAL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class BackendUnavailable(Exception):
    """The backend cannot serve any file now; retry the batch later."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


class LocalDiskError(OSError):
    """The mirror's own disk refused a write (ENOSPC, EDQUOT, EROFS, EIO)."""


def is_local_disk_error(error: BaseException) -> bool:
    """True for an OSError that says the local disk cannot take writes now."""
    return isinstance(error, OSError) and error.errno in LOCAL_DISK_ERRNOS


class Fetcher(Protocol):
    """A fetch backend. Results come back in the order of `items`."""

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]: ...

    def close(self) -> Deferred[None]: ...
