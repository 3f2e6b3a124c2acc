"""fs_mirror's configuration keys (documented for operators in etc/fs_mirror.conf)."""

from __future__ import annotations

from cmdconfig import REQUIRED, Config, Key, Schema
from cmdconfig import metrics as metrics_keys
from cmdconfig.schema import daemon_keys

DEFAULT_FILE = "/etc/fs_mirror.conf"

# Long options that are the same as -o KEY=VALUE.
ALIASES = {"--datadir": "datadir", "--password-from": "fssync.password-from"}


def _rotation(config: Config) -> None:
    if config["rotate.at"] and not config["rotate.backdir"]:
        raise config.error("rotate.at", "daily rotation needs rotate.backdir")


def _report_hash(config: Config) -> None:
    if config["report.hash"] != "none" and config["report.fetch"] == "none":
        raise config.error(
            "report.hash",
            "report mode has no file contents: hashing needs report.fetch=local|ftp|rsync"
            " (with the fssync.* keys of that backend)",
        )


SCHEMA = Schema(
    [
        Key("host", "str", REQUIRED, "the worker running mirrord"),
        Key("port", "port", "2123", "mirrord's protocol port"),
        Key(
            "datadir",
            "path",
            REQUIRED,
            "local mirror: worker paths land under it, and DATADIR/sn holds the position",
        ),
        Key(
            "fssync.type",
            "choice",
            REQUIRED,
            "how file contents are fetched (report = change nothing, print each change)",
            choices=("ftp", "rsync", "local", "report"),
        ),
        Key("fssync.user", "str", "", "user for the ftp or rsync backend"),
        Key(
            "fssync.port",
            "int",
            "0",
            "port of the ftp or rsync backend (0 = its default)",
            minimum=0,
            maximum=65535,
        ),
        Key(
            "fssync.root",
            "str",
            "",
            "where the worker's / is found: FTP directory, rsync module path, or local mount",
        ),
        Key("fssync.password-from", "secret", "", "FILE:ID of the fssync backend's password"),
        Key("auth.secret-from", "secret", "", "FILE:ID of the secret shared with mirrord"),
        Key("tls", "bool", "no", "connect to mirrord with TLS"),
        Key("tls.ca", "path", "", "PEM CA bundle to verify mirrord against (empty = system)"),
        Key(
            "report.format",
            "choice",
            "text",
            "report backend output format",
            choices=("text", "json"),
        ),
        Key("report.syslog", "bool", "no", "report backend also logs each change to syslog"),
        Key(
            "report.syslog.socket",
            "str",
            "/dev/log",
            "the syslog daemon's local socket (report.syslog=yes refuses to start without it)",
        ),
        Key(
            "report.exec",
            "str",
            "",
            "report backend runs this program for each change (empty = none)",
        ),
        Key(
            "report.hash",
            "choice",
            "none",
            "report backend shows each file's content hash (needs report.fetch)",
            choices=("none", "sha256"),
        ),
        Key(
            "report.fetch",
            "choice",
            "none",
            "backend report.hash fetches files through, set up by the fssync.* keys",
            choices=("none", "local", "ftp", "rsync"),
        ),
        Key("rotate.backdir", "path", "", "directory of the daily hard-linked backups"),
        Key("rotate.keep", "int", "14", "number of daily backups kept", minimum=1),
        Key("rotate.at", "time", "", "time of day (HH:MM) to rotate (empty = never)"),
        Key("rotate.host", "str", "", "name of the backups in rotate.backdir (empty = host)"),
        Key(
            "init.max-delete",
            "share",
            "10%",
            "a full sync into a non-empty mirror stops rather than delete more than this share"
            " of its entries (100% = no limit)",
        ),
        Key(
            "reconnect.max",
            "duration",
            "60",
            "longest wait in seconds between reconnection attempts",
            minimum=0,
        ),
        *metrics_keys.KEYS,
        *daemon_keys(),
    ],
    checks=[_rotation, _report_hash, metrics_keys.check_keys],
)
