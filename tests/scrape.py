"""Reading a Prometheus text exposition back, for tests that scrape the daemons."""

from __future__ import annotations

import re
import urllib.request

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(samples by (name, labels), TYPE by name); fails on any line it cannot read."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.split("\n"):  # the format splits on LF only
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = _LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset((k, _unescape(v)) for k, v in _LABEL.findall(labels or ""))
        samples[(name, pairs)] = float(value)
    return samples, types


def scrape(host: str, port: int, timeout: float = 10.0) -> tuple[Samples, dict[str, str], str]:
    """GET http://HOST:PORT/metrics: (samples, types, content type)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as reply:
        body = reply.read().decode("utf-8")
        content_type = reply.headers.get("Content-Type", "")
    samples, types = parse(body)
    return samples, types, content_type


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample; KeyError naming it when absent."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError(f"{name}{labels or ''} not in {sorted(n for n, _ in samples)}")
    return samples[key]
