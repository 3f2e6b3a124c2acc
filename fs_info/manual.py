"""fs_info's manual page: the prose its parser and schema cannot hold (cmdconfig.reference)."""

from __future__ import annotations

from cmdconfig.reference import Manual
from fs_info.cli import make_fs_info_parser

MANUAL = Manual(
    name="fs_info",
    summary="name the parts of the file system mirrord watches",
    synopsis=(
        "[-o datadir=DIR] -a t:PATH -a x:PATH -a tL:LISTFILE -a xL:LISTFILE [IDENTITY]",
        "[-o datadir=DIR] -l [IDENTITY]",
        "[-o datadir=DIR] -r t:PATH [IDENTITY]",
    ),
    description=(
        "fs_info edits an identity: a named set of include roots (t:PATH) and excluded "
        "sub-trees (x:PATH) inside them, which mirrord(1) watches and serves. IDENTITY "
        "defaults to 'system'. tL: and xL: add every path of a list file, one a line. "
        "Every entry of one command line is checked before anything is written (relative "
        "path, missing include, duplicate, an exclude outside every include, removing what "
        "is not listed); the list files are then replaced at once. A running mirrord "
        "takes the change on SIGHUP (systemctl reload mirrord) or use mirrord -k "
        "include/exclude.",
        "Paths are matched by whole components: x:/var/www/a excludes /var/www/a/... but "
        "not /var/www/abc. Names that are not UTF-8 are stored byte for byte.",
    ),
    signals=(("SIGTERM, SIGINT", "Stop (exit 0); nothing half-written is left."),),
    files=(
        ("/etc/fs_info.conf", "The configuration file (see etc/fs_info.conf)."),
        (
            "DATADIR/IDENTITY/.t_files, DATADIR/IDENTITY/.x_files",
            "The included and excluded paths, one a line (DATADIR default /var/mirrord).",
        ),
    ),
    parser=make_fs_info_parser,
    see_also=("mirrord(1)", "fs_mirror(1)"),
)
