"""The packages' import arrows point one way (docs/design.md), read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "cmdconfig", "fs_info", "fs_sync", "mirrord", "fs_mirror")

#: package -> what of ours it may import. ``fs_sync.beneath`` opens the worker's
#: files without following symlinks: the local backend and mirrord's FTP service use it.
#: ``fs_sync.ftpbatch`` is the pure codec of MRTR, spoken by that service and the ftp backend.
#: ``fs_sync.inotify`` is the kernel's inotify (syscalls, record parser): mirrord's watcher and
#: the rsync backend's staging watch use it.
ALLOWED = {
    "protocol": set(),
    "cmdconfig": set(),
    "fs_info": {"cmdconfig"},
    "fs_sync": set(),
    "mirrord": {
        "protocol",
        "fs_info",
        "cmdconfig",
        "fs_sync.beneath",
        "fs_sync.ftpbatch",
        "fs_sync.inotify",
    },
    "fs_mirror": {"protocol", "fs_sync", "cmdconfig"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _allowed(package: str, module: str) -> bool:
    top = module.split(".")[0]
    if top not in PACKAGES or top == package:
        return True
    return any(module == a or module.startswith(a + ".") or top == a for a in ALLOWED[package])


def test_every_import_between_our_packages_follows_an_allowed_arrow() -> None:
    """protocol, cmdconfig and fs_sync import nothing of ours; the daemons only what is listed."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in sorted(_imports(path))
        if not _allowed(package, module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_arrow_check_sees_a_wrong_import() -> None:
    """The check itself can fail: protocol importing mirrord is caught."""
    assert not _allowed("protocol", "mirrord.store")
    assert not _allowed("mirrord", "fs_sync.local")
    assert not _allowed("mirrord", "fs_sync.rsyncwatch")
    assert _allowed("mirrord", "fs_sync.beneath") and _allowed("fs_mirror", "fs_sync.local")
    assert _allowed("mirrord", "fs_sync.inotify")
