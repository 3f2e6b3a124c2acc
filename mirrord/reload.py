"""SIGHUP's configuration half: which changed keys mirrord takes live, and which wait.

The file is read again with the same ``-c`` and ``-o`` as at start (what the
command line set still wins).  A key in :data:`LIVE` is applied to the
running parts; any other changed key (the port, the datadir, TLS, the
identities served...) is named in one warning each, saying it takes effect
at the next restart, rather than silently ignored.  :func:`plan` is pure:
the running configuration and the new one in, the two lists out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LIVE", "Plan", "plan"]

#: keys a running mirrord applies on SIGHUP (see ``MirrordService.reconfigure``)
LIVE = frozenset(
    {
        "log.file",
        "log.verbose",
        "max-clients",
        "timeout",
        "batch",
        "poll.interval",
        "rescan.interval",
        "progress.interval",
    }
)


@dataclass(frozen=True)
class Plan:
    """The keys whose value changed: ``live`` are applied now, ``restart`` at a restart."""

    live: tuple[str, ...]
    restart: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.live or self.restart)


def plan(running: Mapping[str, Any], new: Mapping[str, Any]) -> Plan:
    """Which of ``new``'s keys differ from ``running``'s, split by when they take effect."""
    changed = [key for key in new if running.get(key) != new[key]]
    return Plan(
        live=tuple(k for k in changed if k in LIVE),
        restart=tuple(k for k in changed if k not in LIVE),
    )
