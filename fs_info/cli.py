"""``fs_info``: add, remove and list the include/exclude entries of an identity.

Every entry of one command line is checked before anything is written
(relative path, missing include, duplicate, exclude outside every include,
removing what is not listed, a removal that would orphan an exclude), and
the list files are then written once, atomically.  A bad entry is one line
on stderr and exit status 2.  Paths are bytes: a name that is not UTF-8 is
stored as it is; paths are normalised lexically, never through symlinks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence

from cmdconfig import Config, ConfigError, UsageError
from cmdconfig.cli import CommandParser, make_parser, run
from fs_info import store
from fs_info.config import DEFAULT_FILE, SCHEMA
from fs_info.identity import Identity, normalize

# (kind "t" or "x", normalised path, where it came from: "t:/a" or "list:3")
Entry = tuple[str, bytes, str]


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _path(kind: str, raw: bytes, where: str) -> Entry:
    if not raw:
        raise ConfigError(f"{where}: empty path")
    try:
        return kind, normalize(raw.rstrip(b"/") or b"/"), where
    except ValueError:
        raise ConfigError(f"{where}: path must be absolute and contain no newline") from None


def _list_file(kind: str, file: bytes, spec: str) -> Iterator[Entry]:
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{spec}: cannot read list file: {e.strerror}") from None
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.strip()
        if line and not line.startswith(b"#"):
            yield _path(kind, line, f"{_show(file)}:{number}: {kind}:{_show(line)}")


def parse_entries(specs: Sequence[str], allow_lists: bool = True) -> list[Entry]:
    """``t:PATH``, ``x:PATH`` (and ``tL:FILE``, ``xL:FILE``) as entries."""
    entries: list[Entry] = []
    for spec in specs:
        prefix, sep, rest = spec.partition(":")
        raw = os.fsencode(rest)
        if sep and prefix in ("t", "x"):
            entries.append(_path(prefix, raw, spec))
        elif sep and allow_lists and prefix in ("tL", "xL") and rest:
            entries.extend(_list_file(prefix[0], raw, spec))
        else:
            forms = (
                "t:PATH, x:PATH, tL:LISTFILE or xL:LISTFILE" if allow_lists else "t:PATH or x:PATH"
            )
            raise UsageError(f"bad entry {spec!r}: expected {forms}")
    return entries


def _orphans(includes: set[bytes], excludes: set[bytes]) -> list[bytes]:
    return Identity(includes, excludes).orphan_excludes()


def plan_add(identity: Identity, entries: Sequence[Entry], name: str) -> Identity:
    """The identity with ``entries`` added; ConfigError for the first bad one."""
    includes, excludes = set(identity.includes), set(identity.excludes)
    where: dict[bytes, str] = {}
    for kind, path, origin in entries:
        target = includes if kind == "t" else excludes
        if path in target:
            first = f" (also {where[path]})" if path in where else f" in identity {name!r}"
            raise ConfigError(f"{origin}: already listed{first}")
        other = excludes if kind == "t" else includes
        if path in other:
            raise ConfigError(f"{origin}: {_show(path)} is already listed as the opposite kind")
        target.add(path)
        where[path] = origin
    for path in _orphans(includes, excludes):
        origin = where.get(path, f"x:{_show(path)}")
        raise ConfigError(f"{origin}: exclude is not inside any include of identity {name!r}")
    return Identity(includes, excludes)


def plan_remove(identity: Identity, entries: Sequence[Entry], name: str) -> Identity:
    """The identity without ``entries``; ConfigError if one is not listed."""
    includes, excludes = set(identity.includes), set(identity.excludes)
    for kind, path, origin in entries:
        target = includes if kind == "t" else excludes
        if path not in target:
            raise ConfigError(f"{origin}: not listed in identity {name!r}")
        target.discard(path)
    for path in _orphans(includes, excludes):
        raise ConfigError(
            f"x:{_show(path)} would be outside every include of identity {name!r}; "
            f"remove it too (-r x:{_show(path)})"
        )
    return Identity(includes, excludes)


def _check_exist(entries: Sequence[Entry]) -> None:
    for kind, path, origin in entries:
        if os.path.lexists(path):
            continue
        if kind == "t":
            raise ConfigError(f"{origin}: no such file or directory (an include must exist)")
        sys.stderr.write(f"fs_info: warning: {origin}: does not exist yet (excluded anyway)\n")


def _list(identity: Identity) -> None:
    out = sys.stdout.buffer
    for path in sorted(identity.includes):
        out.write(b"t:" + path + b"\n")
    for path in sorted(identity.excludes):
        out.write(b"x:" + path + b"\n")
    out.flush()


def _main(args: argparse.Namespace, config: Config) -> int:
    try:
        name = store.check_name(args.identity)
    except store.IdentityStoreError as e:
        raise UsageError(str(e)) from None
    datadir = config["datadir"]
    if not (args.add or args.remove or args.list):
        raise UsageError("nothing to do: give -a, -r or -l")
    try:
        current = store.load(datadir, name)
    except store.IdentityStoreError as e:
        raise ConfigError(str(e)) from None
    if args.list:
        if not store.exists(datadir, name):
            raise ConfigError(f"no identity {name!r} in {datadir} (add entries with -a)")
        _list(current)
        return 0
    if args.add:
        entries = parse_entries(args.add)
        _check_exist(entries)
        new = plan_add(current, entries, name)
    else:
        entries = parse_entries(args.remove, allow_lists=False)
        new = plan_remove(current, entries, name)
    store.save(datadir, name, new)
    if args.verbose:
        verb = "added" if args.add else "removed"
        for kind, path, _ in entries:
            sys.stderr.write(f"fs_info: {verb} {kind}:{_show(path)} ({name})\n")
    return 0


def _options(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "-a",
        dest="add",
        action="append",
        default=[],
        metavar="t:PATH|x:PATH|tL:LISTFILE|xL:LISTFILE",
        help="add an include (t:), an exclude (x:), or each path of a list file (repeatable)",
    )
    action.add_argument(
        "-l",
        dest="list",
        action="store_true",
        help="list the identity's entries as t:PATH and x:PATH lines",
    )
    action.add_argument(
        "-r",
        dest="remove",
        action="append",
        default=[],
        metavar="t:PATH|x:PATH",
        help="remove an entry (repeatable)",
    )
    parser.add_argument(
        "identity", nargs="?", default="system", help="identity name (default: system)"
    )


def make_fs_info_parser() -> CommandParser:
    return make_parser(
        "fs_info",
        SCHEMA,
        DEFAULT_FILE,
        _options,
        description="Name the parts of the file system mirrord watches (identities).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fs_info`` command."""
    return run(make_fs_info_parser(), _main, argv, log=False)


if __name__ == "__main__":
    sys.exit(main())
