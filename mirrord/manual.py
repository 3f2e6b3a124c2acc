"""mirrord's manual page: the prose its parser and schema cannot hold (cmdconfig.reference)."""

from __future__ import annotations

from cmdconfig.reference import Manual
from mirrord.main import make_mirrord_parser
from mirrord.reload import LIVE

MANUAL = Manual(
    name="mirrord",
    summary="watch the included trees with inotify and serve their change log",
    synopsis=(
        "[-v] [-c FILE] [-o KEY=VALUE]... [--daemon [--pidfile FILE]]",
        "-k status [--json] | -k include PATH | -k exclude PATH",
    ),
    description=(
        "mirrord runs on a worker, the host whose files are mirrored. It watches the "
        "trees that fs_info(1) names for each identity, keeps a Berkeley DB snapshot of "
        "them and a serial-numbered change log, and serves both over a line protocol on "
        "TCP port 2123 (START, INIT, SN, NEXT; see docs/protocol.md). It never pushes: "
        "each fs_mirror(1) pulls at its own pace and resumes where it stopped.",
        "It prints a line containing 'boot init finished' once it serves. A restart "
        "compares the stored snapshot with the trees and logs the differences as ordinary "
        "records, so clients resume without a new full sync. With ftp.port set it also "
        "serves the included trees read-only over FTP, for fs_mirror's ftp backend.",
        "With -k it does not start a daemon but asks the one running on the same datadir: "
        "'status' prints its session, serials, watches, overflows and each client's lag "
        "(--json: one JSON object); 'include PATH' and 'exclude PATH' change what is "
        "watched at once.",
    ),
    signals=(
        ("SIGTERM, SIGINT", "Stop cleanly (exit status 0)."),
        (
            "SIGHUP",
            "Re-read the identities (what fs_info changed takes effect as with -k "
            "include/exclude) and the configuration file, with the same -c and -o. "
            f"These keys take effect at once: {', '.join(sorted(LIVE))} (log.file is "
            "reopened, for logrotate); any other changed key is named in a warning and "
            "takes effect at the next restart.",
        ),
    ),
    files=(
        ("/etc/mirrord.conf", "The configuration file (see etc/mirrord.conf)."),
        (
            "DATADIR/IDENTITY/.t_files, DATADIR/IDENTITY/.x_files",
            "The included and excluded paths of each identity, one a line, as fs_info "
            "writes them (DATADIR is the datadir key, default /var/mirrord).",
        ),
        ("DATADIR/db/", "The Berkeley DB environment: snapshot, change log and session."),
        ("DATADIR/mirrord.sock", "The control socket mirrord -k talks to (control.socket)."),
        ("DATADIR/mirrord.lock", "Holds the process id; one mirrord per datadir."),
    ),
    parser=make_mirrord_parser,
    see_also=("fs_info(1)", "fs_mirror(1)"),
)
