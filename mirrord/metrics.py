"""mirrord's Prometheus metrics, read off the ``-k status`` reply.

``metrics`` turns the dict ``Steering.status`` answers ``mirrord -k status``
with into metric families, so the two views cannot disagree and nothing is
counted twice.  Pure: a dict in, metrics out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmdconfig.prometheus import Metric, counter, gauge, labelled

__all__ = ["metrics"]


def _clients(status: Mapping[str, Any], field: str) -> list[tuple[dict[str, str], Any]]:
    """One ``({peer}, value)`` per client that has a serial (is past INIT or SN)."""
    return [
        ({"peer": str(c.get("peer", "?"))}, c.get(field))
        for c in status.get("clients", [])
        if c.get("serial") is not None
    ]


def metrics(status: Mapping[str, Any], logged: int) -> list[Metric]:
    """The families for a status reply; ``logged``: records logged since this mirrord started."""
    clients = status.get("clients", [])
    return [
        gauge("mirrord_head_serial", "serial of the newest record in the log", status["head"]),
        gauge("mirrord_oldest_serial", "serial of the oldest record still kept", status["oldest"]),
        counter("mirrord_records_total", "records logged since this mirrord started", logged),
        gauge("mirrord_watches", "directories with an inotify watch", status["watches"]),
        gauge("mirrord_polled", "sub-trees polled past the watch limit", status["polled"]),
        gauge("mirrord_unreadable", "directories mirrord cannot read", status["unreadable"]),
        counter(
            "mirrord_overflows_total",
            "inotify event queue overflows since start (each one rescans)",
            status["overflows"],
        ),
        gauge("mirrord_clients", "connected protocol clients", len(clients)),
        labelled(
            "mirrord_client_serial",
            "gauge",
            "serial a client has been sent",
            _clients(status, "serial"),
        ),  # fmt: skip
        labelled(
            "mirrord_client_lag_records",
            "gauge",
            "records a client is behind the head",
            _clients(status, "lag"),
        ),  # fmt: skip
        labelled(
            "mirrord_client_lag_seconds",
            "gauge",
            "seconds since the oldest record a client has not been sent was logged",
            _clients(status, "lag_seconds"),
        ),
    ]
