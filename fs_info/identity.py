"""Which paths an identity names: include roots (``t:``) minus excluded sub-trees (``x:``).

Paths are absolute bytes without a trailing slash and are compared by whole
components: an exclude of ``/a/cache`` covers ``/a/cache/x`` but not
``/a/cache2``.  A path belongs to an identity when, walking from the path up
through its ancestors, the first include or exclude met is an include (an
exclude wins over an include of the very same path).  So an include nested
inside an excluded tree takes that part back.  Membership costs one set
lookup per ancestor: O(depth), whatever the number of entries.

``walk``/``find`` stream the included tree for millions of files: an explicit
stack of per-directory iterators, each directory's names sorted as bytes
(so the order is deterministic and every directory comes before its
contents), no symlink followed, entries that vanish mid-walk skipped, each
path yielded once however the includes nest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator

__all__ = ["Identity", "IdentitySet", "ancestors", "normalize"]

OnError = Callable[[bytes, OSError], None]
MEMBERSHIP_CACHE = 4096  # directories whose membership is remembered (per identity)


def normalize(path: bytes) -> bytes:
    """Lexically normalised absolute path (no symlink is resolved).

    Raises ValueError for a relative path or one containing NUL or newline.
    """
    if not path.startswith(b"/"):
        raise ValueError(f"not an absolute path: {path!r}")
    if b"\0" in path or b"\n" in path:
        raise ValueError(f"path contains a NUL or newline byte: {path!r}")
    norm = os.path.normpath(path)
    if norm.startswith(b"//"):
        norm = b"/" + norm.lstrip(b"/")
    return norm


def ancestors(path: bytes) -> Iterator[bytes]:
    """``path`` itself, then each parent up to and including ``/``."""
    while True:
        yield path
        if path == b"/":
            return
        cut = path.rfind(b"/")
        path = path[:cut] if cut > 0 else b"/"


def _check(path: bytes) -> bytes:
    if not isinstance(path, bytes):
        raise TypeError(f"identity paths are bytes, got {type(path).__name__}")
    if normalize(path) != path:
        raise ValueError(f"path is not normalised: {path!r}")
    return path


def _minimal(paths: Iterable[bytes]) -> list[bytes]:
    """The paths not inside another of them, sorted."""
    ordered = sorted(set(paths))
    kept: list[bytes] = []
    chosen: set[bytes] = set()
    for path in ordered:
        if not any(a in chosen for a in ancestors(path)):
            kept.append(path)
            chosen.add(path)
    return kept


class _Walker:
    """A membership test plus the includes that can lie below excluded trees."""

    def __contains__(self, path: bytes) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def roots(self) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _all_includes(self) -> Iterable[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _guide(self) -> dict[bytes, list[bytes]]:
        """For each proper ancestor of an include: the children leading to includes."""
        guide: dict[bytes, set[bytes]] = {}
        for include in self._all_includes():
            child = include
            for parent in ancestors(include):
                if parent == include:
                    continue
                guide.setdefault(parent, set()).add(child)
                child = parent
        return {parent: sorted(children) for parent, children in guide.items()}

    def walk(self, onerror: OnError | None = None) -> Iterator[tuple[bytes, os.stat_result]]:
        """Each member path with its ``lstat``, directories before their contents."""
        guide = self._guide()
        stack: list[Iterator[bytes]] = [iter(self.roots())]
        while stack:
            path = next(stack[-1], None)
            if path is None:
                stack.pop()
                continue
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished since its directory was listed
            except OSError as e:
                if onerror is not None:
                    onerror(path, e)
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if path in self:
                yield path, st
                if is_dir:
                    children = _list(path, onerror)
                    if children:
                        stack.append(children)
            elif is_dir and path in guide:
                stack.append(iter(guide[path]))  # only towards nested includes

    def find(self, onerror: OnError | None = None) -> Iterator[bytes]:
        """Each member path, streamed (see ``walk``)."""
        for path, _st in self.walk(onerror):
            yield path


def _list(directory: bytes, onerror: OnError | None) -> Iterator[bytes] | None:
    try:
        with os.scandir(directory) as entries:
            names = sorted(entry.name for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if onerror is not None:
            onerror(directory, e)
        return None
    prefix = directory if directory.endswith(b"/") else directory + b"/"
    return (prefix + name for name in names)


class Identity(_Walker):
    """One identity: sets of include and exclude paths (absolute, normalised bytes)."""

    def __init__(self, includes: Iterable[bytes] = (), excludes: Iterable[bytes] = ()) -> None:
        self.includes: frozenset[bytes] = frozenset(_check(p) for p in includes)
        self.excludes: frozenset[bytes] = frozenset(_check(p) for p in excludes)
        # directory -> member?: a path is a member as its parent is, unless it is named
        # itself, so most questions (every inotify event asks) cost two set lookups and
        # one dict lookup instead of a climb. The sets never change; the map is bounded.
        self._dirs: dict[bytes, bool] = {}

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, bytes):
            return False
        if path in self.excludes:
            return False
        if path in self.includes:
            return True
        if path == b"/":
            return False
        cut = path.rfind(b"/")
        parent = path[:cut] if cut > 0 else b"/"
        verdict = self._dirs.get(parent)
        if verdict is None:
            verdict = self._climb(parent)
            if len(self._dirs) >= MEMBERSHIP_CACHE:
                self._dirs.clear()
            self._dirs[parent] = verdict
        return verdict

    def _climb(self, path: bytes) -> bool:
        for prefix in ancestors(path):
            if prefix in self.excludes:
                return False
            if prefix in self.includes:
                return True
        return False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return (self.includes, self.excludes) == (other.includes, other.excludes)

    def __hash__(self) -> int:
        return hash((self.includes, self.excludes))

    def __repr__(self) -> str:
        return f"Identity(includes={sorted(self.includes)!r}, excludes={sorted(self.excludes)!r})"

    def __bool__(self) -> bool:
        return bool(self.includes or self.excludes)

    def roots(self) -> list[bytes]:
        """The includes not inside another include, sorted."""
        return _minimal(self.includes)

    def _all_includes(self) -> Iterable[bytes]:
        return self.includes

    def orphan_excludes(self) -> list[bytes]:
        """Excludes strictly inside no include (they exclude nothing)."""
        return sorted(
            x for x in self.excludes if not any(a in self.includes for a in ancestors(x) if a != x)
        )


class IdentitySet(_Walker):
    """Several identities: a path is a member if any identity includes it."""

    def __init__(self, identities: Iterable[Identity]) -> None:
        self.identities: tuple[Identity, ...] = tuple(identities)

    def __contains__(self, path: object) -> bool:
        for identity in self.identities:  # noqa: SIM110 - any(<genexpr>) costs 8% of a walk
            if path in identity:
                return True
        return False

    def roots(self) -> list[bytes]:
        """The includes of all identities not inside another one, sorted."""
        return _minimal(self._all_includes())

    def _all_includes(self) -> Iterable[bytes]:
        return (p for identity in self.identities for p in identity.includes)
