"""mirrord's configuration keys (documented for operators in etc/mirrord.conf)."""

from __future__ import annotations

from cmdconfig import Config, Key, Schema
from cmdconfig import metrics as metrics_keys
from cmdconfig.schema import daemon_keys
from fs_info.store import IdentityStoreError, check_name

DEFAULT_FILE = "/etc/mirrord.conf"


def _tls_pair(config: Config) -> None:
    if bool(config["tls.cert"]) != bool(config["tls.key"]):
        missing = "tls.key" if config["tls.cert"] else "tls.cert"
        given = "tls.cert" if config["tls.cert"] else "tls.key"
        raise config.error(given, f"set {missing} as well (TLS needs both or neither)")


def _identities(config: Config) -> None:
    names = config["identities"]
    if not names:
        raise config.error("identities", "name at least one identity (default: system)")
    for name in names:
        try:
            check_name(name)
        except IdentityStoreError as e:
            raise config.error("identities", str(e)) from None


def _ftp_password(config: Config) -> None:
    if config["ftp.port"] and not config["ftp.password-from"]:
        raise config.error("ftp.port", "the embedded FTP server needs ftp.password-from")


SCHEMA = Schema(
    [
        Key(
            "datadir",
            "path",
            "/var/mirrord",
            "directory holding the identities (IDENTITY/.t_files, .x_files) and the database",
        ),
        Key("identities", "list", "system", "comma-separated identities to watch and serve"),
        Key("bind", "str", "0.0.0.0", "address the protocol port listens on"),
        Key("port", "port", "2123", "TCP port of the line protocol"),
        Key("batch", "int", "1024", "most records sent for one NEXT", minimum=1, maximum=100000),
        Key("loglen", "int", "1000000", "change-log records kept for resuming clients", minimum=1),
        Key(
            "max-clients",
            "int",
            "64",
            "most concurrent client connections; the one past it gets BUSY and a close",
            minimum=1,
            maximum=100000,
        ),
        Key(
            "timeout",
            "duration",
            "3600",
            "close a client connection idle this many seconds (0 = never)",
            minimum=0,
        ),
        Key(
            "poll.interval",
            "duration",
            "300",
            "seconds between rescans of sub-trees left unwatched by the watch limit (0 = never)",
            minimum=0,
        ),
        Key(
            "rescan.interval",
            "duration",
            "21600",
            "seconds between verification rescans of every tree, which catch what inotify "
            "cannot see (writes through mmap or another hard link) (0 = never)",
            minimum=0,
        ),
        Key(
            "watch.max",
            "int",
            "0",
            "most inotify watches to use, below the kernel's max_user_watches; directories "
            "past it are polled (0 = as many as the kernel allows)",
            minimum=0,
        ),
        Key(
            "cache.size",
            "int",
            "64",
            "most MiB of Berkeley DB cache; at start it is sized to the stored tree, "
            "from 8 MiB up to this",
            minimum=1,
        ),
        Key(
            "move.wait",
            "duration",
            "0.1",
            "seconds to wait for the second half of a rename before treating it as "
            "a delete or create",
            minimum=0,
        ),
        Key(
            "auth.secret-from",
            "secret",
            "",
            "FILE:ID of the shared secret clients must prove (empty = no authentication)",
        ),
        Key("tls.cert", "path", "", "PEM certificate; with tls.key the port speaks TLS only"),
        Key("tls.key", "path", "", "PEM private key for tls.cert"),
        Key(
            "ftp.port",
            "int",
            "0",
            "port of the embedded read-only FTP server (0 = off)",
            minimum=0,
            maximum=65535,
        ),
        Key("ftp.bind", "str", "127.0.0.1", "address the embedded FTP server listens on"),
        Key("ftp.user", "str", "mirror", "user name the embedded FTP server accepts"),
        Key("ftp.password-from", "secret", "", "FILE:ID of the embedded FTP server's password"),
        Key(
            "control.socket",
            "path",
            "",
            "unix socket for 'mirrord -k' (empty = DATADIR/mirrord.sock)",
        ),
        *metrics_keys.KEYS,
        *daemon_keys(),
    ],
    checks=[_identities, _tls_pair, _ftp_password, metrics_keys.check_keys],
)
