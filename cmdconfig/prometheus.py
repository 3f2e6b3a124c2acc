"""The Prometheus text exposition format (version 0.0.4), written by hand.

Both daemons serve ``/metrics`` (contract 6); the format is small enough
that a dependency would cost more than these lines.  Pure: values in, bytes
out.  A metric is one family: ``# HELP``, ``# TYPE`` and its samples, each
with its own labels.  Label values are escaped (backslash, double quote,
newline) so a peer or path can never break a line; names are checked, so a
typo fails in a unit test rather than in a scraper.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONTENT_TYPE",
    "Metric",
    "Sample",
    "counter",
    "escape_help",
    "escape_label",
    "format_value",
    "gauge",
    "labelled",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge"]
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class Sample:
    """One value of a family; ``None`` is written ``NaN`` (not known yet)."""

    value: float | None
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, _ in self.labels:
            if not _LABEL.match(name) or name.startswith("__"):
                raise ValueError(f"bad label name {name!r}")


@dataclass(frozen=True)
class Metric:
    """A metric family: its name, type, help line and samples."""

    name: str
    kind: Kind
    help: str
    samples: tuple[Sample, ...] = field(default=())

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bad metric name {self.name!r}")
        if self.kind not in ("counter", "gauge"):
            raise ValueError(f"{self.name}: unknown metric type {self.kind!r}")


def gauge(name: str, help: str, value: float | None = None) -> Metric:
    """A gauge with one unlabelled sample."""
    return Metric(name, "gauge", help, (Sample(value),))


def counter(name: str, help: str, value: float | None = None) -> Metric:
    """A counter with one unlabelled sample."""
    return Metric(name, "counter", help, (Sample(value),))


def labelled(
    name: str, kind: Kind, help: str, values: Iterable[tuple[Mapping[str, str], float | None]]
) -> Metric:
    """A family with one sample per ``(labels, value)``."""
    samples = tuple(Sample(value, tuple(labels.items())) for labels, value in values)
    return Metric(name, kind, help, samples)


def escape_label(value: str) -> str:
    """A label value as the format quotes it: ``\\``, ``"`` and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """A HELP text: ``\\`` and newline escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | None) -> str:
    """Integers without a point, NaN and the infinities as the format spells them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _sample_line(name: str, sample: Sample) -> str:
    if not sample.labels:
        return f"{name} {format_value(sample.value)}"
    labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in sample.labels)
    return f"{name}{{{labels}}} {format_value(sample.value)}"


def render(metrics: Iterable[Metric]) -> bytes:
    """The whole exposition: each family's HELP, TYPE and samples, newline-terminated."""
    lines: list[str] = []
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in seen:
            raise ValueError(f"metric {metric.name!r} given twice")
        seen.add(metric.name)
        lines.append(f"# HELP {metric.name} {escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        lines += [_sample_line(metric.name, s) for s in metric.samples]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
