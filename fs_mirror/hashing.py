"""``report.hash``: the sha256 of a reported file's content, fetched through a backend.

Report mode keeps no copy of the tree, so the content is fetched through
the backend ``report.fetch`` names (set up by the ``fssync.*`` keys, as a
mirror's would be) into a scratch directory, hashed in a thread and deleted
at once: at most ``batch`` files are on the local disk at a time.  The hash
is of the content when it was fetched, a moment after the change.  A file
the backend cannot give (gone again, not a file) has no hash; a backend that
cannot serve at all fails the batch, which fs_mirror retries as it would a
mirror's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from fs_sync.interface import Fetcher, FetchItem, Outcome, Result

log = Logger()
_BLOCK = 1 << 20


def sha256_file(path: bytes) -> str:
    """The sha256 of the file at ``path``, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _digest_and_remove(results: list[Result]) -> list[str | None]:
    """Blocking (a worker thread): hash each fetched file, then delete it."""
    digests: list[str | None] = []
    for item, outcome, _why in results:
        if outcome is not Outcome.DONE:
            digests.append(None)
            continue
        try:
            digests.append(sha256_file(item.local))
        finally:
            os.unlink(item.local)
    return digests


class ContentHasher:
    """Fetches files through ``fetcher`` into ``workdir`` and hashes them."""

    def __init__(self, fetcher: Fetcher, workdir: bytes, reactor: Any, batch: int = 64) -> None:
        self.fetcher, self.workdir, self.reactor, self.batch = fetcher, workdir, reactor, batch

    def digests(self, paths: Sequence[bytes]) -> Deferred[list[str | None]]:
        """One digest (or None) per path, in order; ``batch`` files at a time."""
        found: list[str | None] = []
        result: Deferred[list[str | None]] = Deferred()

        def step(start: int) -> None:
            if start >= len(paths):
                result.callback(found)
                return
            chunk = paths[start : start + self.batch]
            items = [
                FetchItem(path, os.path.join(self.workdir, b"%d" % i))
                for i, path in enumerate(chunk)
            ]

            def hashed(digests: list[str | None]) -> None:
                found.extend(digests)
                step(start + len(chunk))

            d = self.fetcher.fetch(items).addCallback(self._hashed)
            d.addCallback(hashed).addErrback(result.errback)

        step(0)
        return result

    def _hashed(self, results: list[Result]) -> Deferred[list[str | None]]:
        for item, outcome, why in results:
            if outcome is not Outcome.DONE:
                log.warn(
                    "report.hash: no hash for {path}: {outcome} ({why})",
                    path=os.fsdecode(item.remote),
                    outcome=outcome.value,
                    why=why,
                )
        return deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _digest_and_remove, results
        )

    def close(self) -> Deferred[None]:
        return self.fetcher.close()
