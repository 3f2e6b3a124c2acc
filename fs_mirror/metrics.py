"""fs_mirror's Prometheus metrics, read off the same ``Status`` that ``--status`` shows.

Pure: a ``Health`` in, metric families out; one scrape takes one
``Status``, so the values of a scrape agree with each other and with the
status file.  Unknown values (no serial yet, lag during a full sync) are
``NaN``, not a made-up zero.
"""

from __future__ import annotations

from cmdconfig.prometheus import Metric, counter, gauge
from fs_mirror.health import Health

__all__ = ["metrics"]


def metrics(health: Health) -> list[Metric]:
    s = health.status()
    return [
        gauge("fs_mirror_serial", "serial applied and saved in the sn file", s.serial),
        gauge("fs_mirror_head_serial", "mirrord's head serial as last named to us", s.head),
        gauge(
            "fs_mirror_lag_records",
            "records named by mirrord and not applied yet (NaN during a full sync)",
            s.lag,
        ),
        gauge("fs_mirror_connected", "1 while in step with mirrord", int(s.connected)),
        counter(
            "fs_mirror_records_applied_total", "records applied since start", s.records_applied
        ),
        counter("fs_mirror_files_fetched_total", "files fetched since start", s.files_fetched),
        counter("fs_mirror_bytes_fetched_total", "bytes fetched since start", s.bytes_fetched),
        counter("fs_mirror_skipped_total", "records refused or skipped since start", s.skipped),
        counter("fs_mirror_errors_total", "errors logged since start", s.errors),
        gauge(
            "fs_mirror_last_batch_timestamp_seconds",
            "when the last batch was applied (epoch seconds)",
            s.last_batch,
        ),
    ]
