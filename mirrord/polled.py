"""Sub-trees that get no inotify watch (the limit was reached): polled instead.

Past the kernel's ``max_user_watches`` (or our ``watch.max``) a directory
cannot be watched, and nothing below it can be either. Its top is recorded
here so that rescans poll it, until a later ``watch()`` succeeds there. The
set is bounded too (``max_polled``): past it, changes below the rest are only
found by full rescans, which is said once, loudly. Tops follow renames and
are forgotten when their tree leaves, like the watches they stand in for.
"""

from __future__ import annotations

from twisted.logger import Logger

from mirrord.paths import is_below, split

__all__ = ["PolledRoots"]


class PolledRoots:
    """The polled sub-tree tops; ``full``: the bound was hit and some were not kept."""

    def __init__(self, max_polled: int, log: Logger) -> None:
        self.max_polled = max_polled
        self.log = log
        self.full = False
        self._paths: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def sorted(self) -> list[bytes]:
        return sorted(self._paths)

    def add(self, path: bytes, message: str) -> bool:
        """Poll ``path`` (its watch failed with ``message``); True when it is new here."""
        if self.covers(path):
            return False
        if len(self._paths) >= self.max_polled:
            if not self.full:
                self.full = True
                self.log.error(
                    "inotify: more than {n} unwatched sub-trees; changes below the rest "
                    "are only found by full rescans. {message}",
                    n=self.max_polled,
                    message=message,
                )
            return False
        self._paths.add(path)
        self.log.warn(
            "inotify: {path} will be polled: {message}",
            path=path.decode(errors="replace"),
            message=message,
        )
        return True

    def discard(self, path: bytes) -> None:
        self._paths.discard(path)

    def covers(self, path: bytes) -> bool:
        """``path`` or one of its ancestors is a polled top: O(depth) set lookups."""
        if not self._paths:
            return False
        cur = path
        while True:
            if cur in self._paths:
                return True
            if cur == b"/" or not cur.startswith(b"/"):
                return False
            cur = split(cur)[0]

    def drop_below(self, path: bytes) -> None:
        """``path``'s tree left: forget the tops inside it."""
        if self._paths:
            self._paths = {p for p in self._paths if not is_below(p, path)}
            self.full = False

    def move(self, src: bytes, dst: bytes) -> None:
        """``src`` was renamed to ``dst``: the tops inside it follow."""
        if self._paths:
            self._paths = {dst + p[len(src) :] if is_below(p, src) else p for p in self._paths}
