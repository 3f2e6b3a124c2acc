"""mirrord.reload: which changed keys SIGHUP applies live, and which wait for a restart."""

from __future__ import annotations

from cmdconfig import load
from mirrord.config import SCHEMA
from mirrord.reload import LIVE, plan


def config(*overrides: str):
    return load(SCHEMA, None, ["datadir=/var/m", *overrides])


def test_nothing_changed_plans_nothing():
    """The same file read again changes nothing."""
    assert not plan(config(), config()).changed


def test_live_and_restart_keys_are_told_apart():
    """max-clients and the intervals apply now; the port and TLS wait for a restart."""
    got = plan(
        config("max-clients=4"),
        config("max-clients=8", "poll.interval=60", "port=2200", "tls.cert=/c", "tls.key=/k"),
    )
    assert got.live == ("max-clients", "poll.interval")
    assert got.restart == ("port", "tls.cert", "tls.key")


def test_every_live_key_is_a_mirrord_key():
    """A key the service would apply exists in the schema (a rename cannot leave it dead)."""
    assert set(SCHEMA.names()) >= LIVE
    assert {"port", "bind", "datadir", "tls.cert", "identities"}.isdisjoint(LIVE)
