"""fs_mirror: the backup-host client that replays a mirrord worker's change log.

``state`` (the locked sn file), ``apply`` (confinement and replay: the
safety boundary), ``client`` (the connection), ``rotate`` (dated hard-link
backups), ``service`` (wiring) and ``main`` (the command).
"""
