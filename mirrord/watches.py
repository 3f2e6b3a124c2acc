"""A compact two-way map between inotify watch descriptors and directory paths.

One watch per directory means millions of entries on a big server, so a
watch costs one small bytes object, the parent's wd (4 bytes) followed by
the name, shared as the key of the reverse map, instead of an object holding
the full path (bench/bench_watches.py measures it against pyinotify).  The full path is
rebuilt by walking up the parents (O(depth)), and a renamed directory is
one re-parented node: every watch below it follows for free, which is what
makes an in-tree ``mv`` of a huge directory O(1) here.

A watch whose parent directory is not watched (an include root, or a
directory whose parent could not be watched) is a *root* and keeps its
full path.  Roots are expected to be few.
"""

from __future__ import annotations

from collections.abc import Iterator

from mirrord.paths import is_below, join, split

__all__ = ["WatchTree", "is_below", "join", "split"]

_MAX_DEPTH = 4096  # PATH_MAX / 2 components: anything deeper is a corrupted chain


def _node(parent_wd: int, name: bytes) -> bytes:
    return parent_wd.to_bytes(4, "little") + name


def _parent(node: bytes) -> int:
    return int.from_bytes(node[:4], "little")


class WatchTree:
    """wd <-> path, stored as a tree of ``parent_wd + name`` nodes."""

    __slots__ = ("_nodes", "_children", "_roots", "_root_wds")

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}  # wd -> node: parent wd (4 bytes LE) + name
        self._children: dict[bytes, int] = {}  # the same node object -> wd
        self._roots: dict[int, bytes] = {}  # wd -> full path
        self._root_wds: dict[bytes, int] = {}  # full path -> wd

    def __len__(self) -> int:
        return len(self._nodes) + len(self._roots)

    def __contains__(self, wd: object) -> bool:
        return wd in self._nodes or wd in self._roots

    def roots(self) -> Iterator[tuple[int, bytes]]:
        """The watches whose parent is not watched, with their full paths."""
        return iter(list(self._roots.items()))

    def is_root(self, wd: int) -> bool:
        return wd in self._roots

    def path_of(self, wd: int) -> bytes | None:
        """The current path of ``wd``, or None when it (or an ancestor) is unknown."""
        names: list[bytes] = []
        nodes = self._nodes
        roots = self._roots
        for _ in range(_MAX_DEPTH):
            top = roots.get(wd)
            if top is not None:
                if not names:
                    return top
                names.reverse()
                return (b"" if top == b"/" else top) + b"/" + b"/".join(names)
            node = nodes.get(wd)
            if node is None:
                return None
            wd = _parent(node)
            names.append(node[4:])
        return None

    def wd_of(self, path: bytes) -> int | None:
        """The watch on ``path``, or None."""
        root_wds = self._root_wds
        names: list[bytes] = []
        wd = root_wds.get(path)
        while wd is None:
            if path == b"/" or not path.startswith(b"/"):
                return None
            path, name = split(path)
            names.append(name)
            wd = root_wds.get(path)
        children = self._children
        for name in reversed(names):
            wd = children.get(_node(wd, name))
            if wd is None:
                return None
        return wd

    def add(self, wd: int, path: bytes) -> None:
        """Record that ``wd`` watches ``path`` (idempotent; a known wd is re-placed)."""
        if wd in self:
            if self.path_of(wd) == path:
                return
            self._detach(wd)
        self._attach(wd, path)

    def move(self, src: bytes, dst: bytes) -> bool:
        """A directory was renamed: re-parent its node.  False when src is not watched."""
        wd = self.wd_of(src)
        if wd is None:
            return False
        self.move_wd(wd, dst)
        return True

    def move_wd(self, wd: int, dst: bytes) -> None:
        """Re-place the watch ``wd`` (and so everything below it) at ``dst``."""
        src = self.path_of(wd)
        self._detach(wd)
        self._attach(wd, dst)
        if src is None:
            return
        for other, top in list(self._roots.items()):  # nested roots keep full paths
            if other != wd and is_below(top, src):
                self._set_root(other, dst + top[len(src) :])

    def remove(self, wd: int) -> None:
        """Forget one watch (the kernel dropped it).  Watches below it become orphans."""
        self._detach(wd)

    def remove_tree(self, path: bytes) -> list[int]:
        """Forget ``path`` and every watch below it; return their wds (for rm_watch)."""
        wd = self.wd_of(path)
        found = [] if wd is None else self.remove_subtree(wd)
        for other, top in list(self._roots.items()):
            if is_below(top, path):
                found.extend(self.remove_subtree(other))
        return found

    def remove_subtree(self, wd: int) -> list[int]:
        """Forget ``wd`` and every watch below it; return their wds.

        Nodes do not list their children (that would cost memory on every
        directory), so this is one pass over all watches with a memo of
        the answers: O(watches), for the rare move out of the tree.
        """
        if wd not in self:
            return []
        nodes = self._nodes
        below: dict[int, bool] = {wd: True}
        for start in nodes:
            chain: list[int] = []
            cur = start
            verdict = False
            for _ in range(_MAX_DEPTH):
                known = below.get(cur)
                if known is not None:
                    verdict = known
                    break
                chain.append(cur)
                node = nodes.get(cur)
                if node is None:
                    break
                cur = _parent(node)
            for w in chain:
                below[w] = verdict
        found = [w for w, inside in below.items() if inside]
        for w in found:
            self._detach(w)
        return found

    def _attach(self, wd: int, path: bytes) -> None:
        parent, name = split(path)
        pwd = None if not name else self.wd_of(parent)
        if pwd is None or pwd == wd:
            self._set_root(wd, path)
            return
        node = _node(pwd, name)
        self._nodes[wd] = node
        self._children[node] = wd

    def _set_root(self, wd: int, path: bytes) -> None:
        old = self._roots.get(wd)
        if old is not None and self._root_wds.get(old) == wd:
            del self._root_wds[old]
        self._roots[wd] = path
        self._root_wds[path] = wd

    def _detach(self, wd: int) -> None:
        node = self._nodes.pop(wd, None)
        if node is not None:
            if self._children.get(node) == wd:
                del self._children[node]
            return
        top = self._roots.pop(wd, None)
        if top is not None and self._root_wds.get(top) == wd:
            del self._root_wds[top]
