"""``metrics.port`` / ``metrics.bind``: the ``/metrics`` endpoint both daemons may serve.

The keys and their check are shared so the two daemons cannot spell them
differently; the listener is a Twisted service each daemon adds to its own
tree.  What is measured is the daemon's business: it hands in ``collect``,
called once per scrape on the reactor thread, which reads the facts the
daemon already keeps (nothing is counted twice for the sake of metrics).
twisted.web is imported only when the service starts, so a daemon without
``metrics.port`` never loads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from cmdconfig.prometheus import CONTENT_TYPE, Metric, render
from cmdconfig.schema import Key

if TYPE_CHECKING:
    from cmdconfig.loader import Config

__all__ = ["KEYS", "MetricsService", "check_keys", "listen_metrics", "metrics_page"]

KEYS = (
    Key(
        "metrics.port",
        "int",
        "0",
        "TCP port serving Prometheus metrics on http://metrics.bind:PORT/metrics (0 = off)",
        minimum=0,
        maximum=65535,
    ),
    Key("metrics.bind", "str", "127.0.0.1", "address the metrics port listens on"),
)

Collect = Callable[[], Iterable[Metric]]


def check_keys(config: Config) -> None:
    """``metrics.bind`` must be an IP address of this host's kind (v4 or v6 literal)."""
    bind = config["metrics.bind"]
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise config.error("metrics.bind", f"expected an IP address, got {bind!r}") from None


def metrics_page(collect: Collect) -> Any:
    """A twisted.web resource tree: ``/metrics`` renders ``collect()``; anything else 404."""
    from twisted.web.resource import Resource

    class _Metrics(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:  # noqa: N802 (twisted.web's name)
            body = render(collect())
            request.setHeader(b"Content-Type", CONTENT_TYPE.encode("ascii"))
            return body

    root = Resource()  # type: ignore[no-untyped-call]  # twisted.web's own, untyped
    page: Any = _Metrics()  # type: ignore[no-untyped-call]  # an IResource (zope: opaque)
    root.putChild(b"metrics", page)
    return root


def listen_metrics(reactor: Any, port: int, bind: str, collect: Collect) -> Any:
    """Listen on ``bind:port`` serving ``/metrics``; the listening port, or
    ``CannotListenError`` so the daemon can say which key to change."""
    from twisted.web.server import Site

    site = Site(metrics_page(collect))  # type: ignore[no-untyped-call]  # untyped
    site.noisy = False  # the daemon's own line says where it listens
    site.log = lambda request: None  # type: ignore[method-assign]  # no access log per scrape
    return reactor.listenTCP(port, site, interface=bind)


class MetricsService(Service):
    """``listen_metrics`` while running; ``port`` is the listening port (or None)."""

    def __init__(self, port: int, bind: str, collect: Collect, reactor: Any) -> None:
        self.name = "metrics"  # type: ignore[assignment]  # Service types it as None
        self.port_number, self.bind, self.collect, self.reactor = port, bind, collect, reactor
        self.port: Any = None

    def startService(self) -> None:  # noqa: N802
        self.port = listen_metrics(self.reactor, self.port_number, self.bind, self.collect)
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's own, untyped

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's own, untyped
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
