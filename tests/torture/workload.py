"""A seeded generator of file-system operations, and an executor that applies them.

The generator is pure: ``Workload(seed).ops(n)`` yields the same frozen
operations for the same seed, with no I/O.  It keeps a model of what exists
so that most operations are valid; the executor applies them to a real
directory and counts (never raises) the ones that fail because the model
and the disk drifted apart.

Every path is relative to one *base* directory holding three areas:
``root/`` (mirrored), ``root/excl/`` (an excluded sub-tree of it) and
``out/`` (a sibling outside the mirrored root).  Names are ``str`` with
``surrogateescape`` so invalid UTF-8 bytes round-trip to the OS unchanged.

Contents written in place (create, overwrite, the temp file of a save in the
tree) are plain random bytes; contents that reach the tree only by a rename
from ``out/`` carry a self-checking header (``MAGIC`` length digest), so a
reader of a mirror can tell a half-written copy of them (see ``check``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = "root"
EXCL = "root/excl"
OUT = "out"
MAGIC = b"TORTURE1 "

# name stems: spaces, Greek, Cyrillic, CJK, '%', invalid UTF-8, a leading dash
STEMS = (
    "f",
    "d",
    "with space ",
    "ελληνικά-",
    "кириллица-",
    "漢字-",
    "100%",
    "%41%",
    os.fsdecode(b"inv\xff\xfe-"),
    "-dash",
    "x.y ",
)
NEWLINE_STEM = "new\nline-"
FILE_MODES = (0o644, 0o600, 0o640, 0o755, 0o700, 0o4755, 0o444)
DIR_MODES = (0o755, 0o700, 0o711, 0o750)


# -- the operations --------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    """Create or overwrite ``path`` in place (O_TRUNC); ``keep_mtime`` restores the old mtime."""

    path: str
    content: bytes
    keep_mtime: bool = False


@dataclass(frozen=True)
class Append:
    path: str
    data: bytes


@dataclass(frozen=True)
class Truncate:
    path: str
    size: int


@dataclass(frozen=True)
class Delete:
    """Unlink a file or symlink."""

    path: str


@dataclass(frozen=True)
class Mkdir:
    """``mkdir -p`` (one level or many)."""

    path: str


@dataclass(frozen=True)
class RmTree:
    path: str


@dataclass(frozen=True)
class Rename:
    """rename(2), also over an existing file or empty directory, and across the areas."""

    src: str
    dst: str


@dataclass(frozen=True)
class Chmod:
    path: str
    mode: int


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


@dataclass(frozen=True)
class HardLink:
    src: str
    dst: str


@dataclass(frozen=True)
class FillThenRename:
    """``mkdir X.tmp; echo v > X.tmp/app.txt; mv X.tmp X`` at once."""

    tmp: str
    final: str
    files: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class AtomicSave:
    """Write ``tmp`` then rename it over ``path`` (an editor's or a deployer's save)."""

    tmp: str
    path: str
    content: bytes


Op = (
    Write
    | Append
    | Truncate
    | Delete
    | Mkdir
    | RmTree
    | Rename
    | Chmod
    | Symlink
    | HardLink
    | FillThenRename
    | AtomicSave
)
KINDS = (
    "create",
    "overwrite",
    "overwrite-same-size",
    "append",
    "truncate",
    "delete",
    "mkdir",
    "mkdir-deep",
    "rmtree",
    "rename-file",
    "rename-file-over",
    "rename-dir",
    "rename-dir-across",
    "move-out",
    "move-in",
    "move-to-excluded",
    "move-from-excluded",
    "chmod-file",
    "chmod-dir",
    "symlink",
    "symlink-dangling",
    "symlink-to-dir",
    "hardlink",
    "fill-then-rename",
    "atomic-save-in-tree",
    "atomic-save-from-out",
)


# -- self-checking contents --------------------------------------------------------
def sealed(body: bytes) -> bytes:
    """``body`` behind a header naming its length and digest."""
    head = MAGIC + b"%d %s\n" % (len(body), hashlib.sha256(body).hexdigest().encode())
    return head + body


def check(content: bytes) -> bool:
    """False only for a sealed content cut short or altered inside its sealed part.

    Anything appended after the sealed part, and contents without the header,
    are fine: they come from in-place writes, which a mirror may copy at any
    moment of the worker's write.
    """
    if not content.startswith(MAGIC):
        return True
    head, nl, rest = content.partition(b"\n")
    try:
        length_s, digest = head[len(MAGIC) :].split(b" ")
        length = int(length_s)
    except ValueError:
        return False
    return (
        bool(nl)
        and len(rest) >= length
        and hashlib.sha256(rest[:length]).hexdigest().encode() == digest
    )


# -- the generator ---------------------------------------------------------------
def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


class Workload:
    """Seeded operations over a model of base/{root,root/excl,out}."""

    def __init__(self, seed: int, *, newline_names: bool = True) -> None:
        self.rng = random.Random(seed)
        self.stems = STEMS + ((NEWLINE_STEM,) if newline_names else ())
        self.kinds: dict[str, str] = {ROOT: "dir", EXCL: "dir", OUT: "dir"}
        self.sizes: dict[str, int] = {}
        # hard-linked paths: a change in place through one name changes the others
        # without an inotify event naming them (caught only by mirrord's verification
        # rescan, contract 2.2 notwithstanding), so in-place changes avoid them
        self.linked: set[str] = set()
        # paths holding a sealed content: only replaced by rename, or grown in place
        self.sealed: set[str] = set()
        self.counter = 0
        self.emitted: Counter[str] = Counter()

    # model queries
    def _pick(
        self, kind: str, area: str = ROOT, exclude_excl: bool = True, unlinked: bool = False
    ) -> str | None:
        fixed = (ROOT, EXCL, OUT)
        cands = [
            p
            for p, k in self.kinds.items()
            if k == kind
            and _below(p, area)
            and p not in fixed
            and not (exclude_excl and area == ROOT and _below(p, EXCL))
            and not (unlinked and p in self.linked)
        ]
        return self.rng.choice(cands) if cands else None

    def _dir(self, area: str = ROOT) -> str:
        cands = [
            p
            for p, k in self.kinds.items()
            if k == "dir" and _below(p, area) and not (area == ROOT and _below(p, EXCL))
        ]
        # shallow parents are likelier, so trees stay a few levels deep and readable
        weights = [1.0 / (1 + p.count("/")) ** 3 for p in cands]
        return self.rng.choices(cands, weights)[0]

    def _name(self) -> str:
        self.counter += 1
        return f"{self.rng.choice(self.stems)}{self.counter}"

    def _new(self, area: str = ROOT) -> str:
        return f"{self._dir(area)}/{self._name()}"

    def _content(self, size: int | None = None, *, seal: bool = False) -> bytes:
        rng = self.rng
        if size is None:
            size = rng.choice((0, 1, 7, 100, 511, 4096, 4097, rng.randrange(65536), 65536))
        body = rng.randbytes(size)
        return sealed(body) if seal else body

    # model updates
    def _drop(self, path: str) -> None:
        for p in [p for p in self.kinds if _below(p, path)]:
            del self.kinds[p]
            self.sizes.pop(p, None)
            self.linked.discard(p)
            self.sealed.discard(p)

    def _move(self, src: str, dst: str) -> None:
        moving = {p: k for p, k in self.kinds.items() if _below(p, src)}
        sizes = {p: s for p, s in self.sizes.items() if _below(p, src)}
        linked = {p for p in self.linked if _below(p, src)}
        sealed = {p for p in self.sealed if _below(p, src)}
        self._drop(src)
        self._drop(dst)
        for p, k in moving.items():
            self.kinds[dst + p[len(src) :]] = k
        for p, s in sizes.items():
            self.sizes[dst + p[len(src) :]] = s
        self.linked |= {dst + p[len(src) :] for p in linked}
        self.sealed |= {dst + p[len(src) :] for p in sealed}

    def _file(self, path: str, size: int) -> None:
        self._drop(path)
        self._parents(path)
        self.kinds[path] = "file"
        self.sizes[path] = size

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent and parent not in self.kinds:
            self.kinds[parent] = "dir"
            parent = os.path.dirname(parent)

    def _empty_dir(self, path: str) -> bool:
        return not any(p != path and _below(p, path) for p in self.kinds)

    def populate(self, files: int) -> list[Op]:
        """Operations building a starting tree of ``files`` files in a few directories."""
        rng, ops = self.rng, []
        dirs = [ROOT]
        for _ in range(max(1, files // 40)):
            d = f"{rng.choice(dirs)}/{self._name()}"
            dirs.append(d)
            self._parents(d + "/x")
            ops.append(Mkdir(d))
        for _ in range(files):
            path, content = (
                f"{rng.choice(dirs)}/{self._name()}",
                self._content(rng.choice((0, 10, 300, 5000))),
            )
            self._file(path, len(content))
            ops.append(Write(path, content))
        return ops

    # one operation
    def ops(self, n: int):
        """``n`` operations, each valid against the model as far as it can tell."""
        produced = 0
        while produced < n:
            kind = self.rng.choice(KINDS)
            op = self._make(kind)
            if op is not None:
                self.emitted[kind] += 1
                produced += 1
                yield op

    def _make(self, kind: str) -> Op | None:  # noqa: C901 - one branch per kind, read as a table
        rng = self.rng
        match kind:
            case "create":
                path, content = self._new(), self._content()
                self._file(path, len(content))
                return Write(path, content)
            case "overwrite" | "overwrite-same-size":
                path = self._pick("file", unlinked=True)
                if path is None or path in self.sealed:  # sealed contents change atomically
                    return None
                same = kind == "overwrite-same-size"
                content = self._content(self.sizes[path] if same else None)
                self._file(path, len(content))
                return Write(path, content, keep_mtime=same)
            case "append":
                path = self._pick("file", unlinked=True)
                if path is None:
                    return None
                data = self._content(rng.choice((1, 10, 3000)))
                self.sizes[path] += len(data)
                return Append(path, data)
            case "truncate":
                path = self._pick("file", unlinked=True)
                if path is None:
                    return None
                # a sealed content is never cut in place (a copy taken meanwhile
                # would be cut short): it only grows
                shorter = () if path in self.sealed else (0, self.sizes[path] // 2, 1)
                size = rng.choice((self.sizes[path] + 100, *shorter))
                self.sizes[path] = size
                return Truncate(path, size)
            case "delete":
                path = self._pick("file") or self._pick("link")
                if path is None:
                    return None
                self._drop(path)
                return Delete(path)
            case "mkdir":
                path = self._new()
                self._parents(path + "/x")
                return Mkdir(path)
            case "mkdir-deep":
                path = "/".join([self._new()] + [self._name() for _ in range(rng.randrange(2, 6))])
                self._parents(path + "/x")
                return Mkdir(path)
            case "rmtree":
                path = self._pick("dir", rng.choice((ROOT, ROOT, OUT, EXCL)), exclude_excl=False)
                if path is None or path in (ROOT, EXCL, OUT):
                    return None
                self._drop(path)
                return RmTree(path)
            case "rename-file" | "rename-file-over":
                src = self._pick("file") or self._pick("link")
                dst = self._pick("file") if kind == "rename-file-over" else self._new()
                if src is None or dst is None or src == dst:
                    return None
                self._move(src, dst)
                return Rename(src, dst)
            case "rename-dir" | "rename-dir-across":
                src = self._pick("dir")
                if src is None:
                    return None
                if kind == "rename-dir":
                    dst = f"{os.path.dirname(src)}/{self._name()}"
                else:
                    dst = self._new()
                if _below(dst, src):
                    return None
                self._move(src, dst)
                return Rename(src, dst)
            case "move-out" | "move-to-excluded":
                src = self._pick("dir") or self._pick("file")
                if src is None:
                    return None
                dst = self._new(OUT if kind == "move-out" else EXCL)
                self._move(src, dst)
                return Rename(src, dst)
            case "move-in" | "move-from-excluded":
                area = OUT if kind == "move-in" else EXCL
                src = self._pick("dir", area) or self._pick("file", area)
                if src is None:
                    return None
                dst = self._new()
                self._move(src, dst)
                return Rename(src, dst)
            case "chmod-file":
                path = self._pick("file", unlinked=True)
                return None if path is None else Chmod(path, rng.choice(FILE_MODES))
            case "chmod-dir":
                path = self._pick("dir")
                return None if path is None else Chmod(path, rng.choice(DIR_MODES))
            case "symlink" | "symlink-dangling" | "symlink-to-dir":
                path = self._new()
                if kind == "symlink-dangling":
                    target = f"nowhere/{self._name()}"
                else:
                    other = self._pick("file" if kind == "symlink" else "dir")
                    if other is None:
                        return None
                    target = os.path.relpath(other, os.path.dirname(path))
                self._drop(path)
                self.kinds[path] = "link"
                return Symlink(path, target)
            case "hardlink":
                src = self._pick("file")
                if src is None:
                    return None
                dst = self._new()
                self._file(dst, self.sizes[src])
                self.linked |= {src, dst}
                return HardLink(src, dst)
            case "fill-then-rename":
                parent = self._dir()
                final = f"{parent}/{self._name()}"
                tmp = final + ".tmp"
                files = tuple((self._name(), self._content()) for _ in range(rng.randrange(1, 4)))
                self._drop(final)
                self.kinds[final] = "dir"
                for name, content in files:
                    self._file(f"{final}/{name}", len(content))
                return FillThenRename(tmp, final, files)
            case "atomic-save-in-tree" | "atomic-save-from-out":
                path = self._pick("file") if rng.random() < 0.8 else None
                path = path or self._new()
                if kind == "atomic-save-in-tree":
                    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.swp"
                    content = self._content()
                else:
                    tmp = f"{OUT}/.save{self.counter}"
                    content = self._content(seal=True)
                self._file(path, len(content))
                if kind == "atomic-save-from-out":
                    self.sealed.add(path)
                return AtomicSave(tmp, path, content)
        raise AssertionError(kind)


# -- the executor ----------------------------------------------------------------
HARMLESS = (
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOTEMPTY,
    errno.EINVAL,
    errno.EXDEV,
)


class Executor:
    """Applies operations under ``base``; counts what succeeded and what failed harmlessly."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def apply(self, op: Op) -> bool:
        name = type(op).__name__
        try:
            self._apply(op)
        except OSError as exc:
            if exc.errno not in HARMLESS:
                raise
            self.failed[name] += 1
            return False
        self.done[name] += 1
        return True

    def apply_all(self, ops) -> None:
        for op in ops:
            self.apply(op)

    def _p(self, rel: str) -> str:
        return os.path.join(self.base, rel)

    def _write(self, path: str, content: bytes, flags: int = os.O_TRUNC) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _apply(self, op: Op) -> None:  # noqa: C901 - one branch per kind
        p = self._p
        match op:
            case Write(path, content, keep_mtime):
                before = os.lstat(p(path)) if keep_mtime else None
                os.makedirs(os.path.dirname(p(path)), exist_ok=True)
                self._write(p(path), content)
                if before is not None:
                    os.utime(
                        p(path), ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False
                    )
            case Append(path, data):
                self._write(p(path), data, os.O_APPEND)
            case Truncate(path, size):
                fd = os.open(p(path), os.O_WRONLY | os.O_NOFOLLOW)
                try:
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
            case Delete(path):
                os.unlink(p(path))
            case Mkdir(path):
                os.makedirs(p(path), exist_ok=True)
            case RmTree(path):
                import shutil

                if os.path.islink(p(path)) or not os.path.isdir(p(path)):
                    raise FileNotFoundError(errno.ENOENT, "not a directory", path)
                shutil.rmtree(p(path))
            case Rename(src, dst):
                os.makedirs(os.path.dirname(p(dst)), exist_ok=True)
                os.rename(p(src), p(dst))
            case Chmod(path, mode):
                if os.path.islink(p(path)):
                    raise FileNotFoundError(errno.ENOENT, "a symlink", path)
                os.chmod(p(path), mode)
            case Symlink(path, target):
                os.symlink(target, p(path))
            case HardLink(src, dst):
                os.link(p(src), p(dst), follow_symlinks=False)
            case FillThenRename(tmp, final, files):
                os.mkdir(p(tmp))
                for name, content in files:
                    self._write(os.path.join(p(tmp), name), content)
                os.rename(p(tmp), p(final))
            case AtomicSave(tmp, path, content):
                self._write(p(tmp), content)
                os.rename(p(tmp), p(path))
            case _:
                raise AssertionError(op)

    def summary(self) -> str:
        ok, bad = sum(self.done.values()), sum(self.failed.values())
        return f"{ok + bad} ops ({ok} applied, {bad} failed harmlessly: {dict(self.failed)})"
