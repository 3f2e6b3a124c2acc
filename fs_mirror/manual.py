"""fs_mirror's manual page: the prose its parser and schema cannot hold (cmdconfig.reference)."""

from __future__ import annotations

from cmdconfig.reference import Manual
from fs_mirror.main import PARSER

MANUAL = Manual(
    name="fs_mirror",
    summary="mirror one mirrord worker's trees into a local directory",
    synopsis=(
        "-o host=HOST -o fssync.type=ftp|rsync|local|report [-o KEY=VALUE]... "
        "[--password-from=FILE:ID] --datadir=DIR",
        "-c FILE [--daemon [--pidfile FILE]]",
        "-c FILE --rotate",
    ),
    description=(
        "fs_mirror runs on the backup host, one process per worker. It connects to the "
        "worker's mirrord(1), applies a full sync (INIT) once, then pulls the change log "
        "and replays each directory, delete, move, symlink and attribute change locally, "
        "fetching changed file contents through its fssync backend: rsync (an rsync "
        "daemon on the worker), ftp (mirrord's embedded FTP service), local (the worker's "
        "tree mounted on this host) or report (changes nothing and prints each change: "
        "the tripwire).",
        "A worker path /var/www/index.php lands at DATADIR/var/www/index.php. The file "
        "DATADIR/sn holds session,serial, so a restart resumes where it stopped. It "
        "prints a line containing 'init finished' once its first full sync is applied; "
        "-v prints one line per applied record. It never writes outside DATADIR, and "
        "replaces files by rename, so hard-linked daily backups (rotate.*) never change.",
    ),
    signals=(
        (
            "SIGTERM, SIGINT",
            "Stop cleanly once the batch in hand is applied and its serial saved (exit 0).",
        ),
        ("SIGHUP", "Reopen log.file (for logrotate); fs_mirror runs on."),
    ),
    files=(
        ("/etc/fs_mirror.conf", "The configuration file (see etc/fs_mirror.conf)."),
        ("DATADIR/sn", "session,serial of the last applied batch; locked while it runs."),
        ("DATADIR/.fs_mirror.d/", "Staging for fetched files; never part of the mirror."),
        (
            "BACKDIR/HOST/YYYY-MM-DD",
            "The daily hard-linked backups (rotate.backdir, rotate.host, rotate.keep).",
        ),
    ),
    parser=lambda: PARSER,
    see_also=("mirrord(1)", "fs_info(1)", "rsync(1)", "rsyncd.conf(5)"),
)
