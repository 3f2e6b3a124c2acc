"""The one seam between fs_mirror and the ways of fetching a file's content.

fs_mirror knows only this module: it hands a batch of FWRITE paths to
whatever `Fetcher` the registry built and gets one outcome per item back.
Outcomes are values, not exceptions, so one bad file never fails a batch.
"""

from __future__ import annotations

import enum
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
    FAILED = "failed"  # anything else: network, permissions, `local` is a directory


Result = tuple[FetchItem, Outcome, str]


class Fetcher(Protocol):
    """A fetch backend. Results come back in the order of `items`."""

    def fetch(self, items: Sequence[FetchItem]) -> Deferred[list[Result]]: ...

    def close(self) -> Deferred[None]: ...
