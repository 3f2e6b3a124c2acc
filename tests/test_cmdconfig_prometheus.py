"""The hand-written Prometheus text format: families, values, escaping, name checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmdconfig.prometheus import (
    Metric,
    Sample,
    counter,
    escape_help,
    escape_label,
    format_value,
    gauge,
    labelled,
    render,
)
from tests.scrape import parse


def test_a_family_is_help_type_then_samples():
    """Each family: its HELP line, its TYPE line, then its samples, newline-terminated."""
    text = render(
        [
            gauge("mirrord_head_serial", "the newest serial", 42),
            counter("mirrord_records_total", "records logged", 7),
        ]
    ).decode()
    assert text == (
        "# HELP mirrord_head_serial the newest serial\n"
        "# TYPE mirrord_head_serial gauge\n"
        "mirrord_head_serial 42\n"
        "# HELP mirrord_records_total records logged\n"
        "# TYPE mirrord_records_total counter\n"
        "mirrord_records_total 7\n"
    )


def test_labelled_samples_and_an_empty_family():
    """One sample per label set; a family with no samples still has HELP and TYPE."""
    text = render(
        [
            labelled("lag", "gauge", "lag", [({"peer": "10.0.0.1:5"}, 3), ({"peer": "b"}, 0)]),
            labelled("none_yet", "gauge", "nobody connected", []),
        ]
    ).decode()
    lines = text.splitlines()
    assert 'lag{peer="10.0.0.1:5"} 3' in lines and 'lag{peer="b"} 0' in lines
    assert lines[-2:] == ["# HELP none_yet nobody connected", "# TYPE none_yet gauge"]


def test_label_values_are_escaped():
    """Backslash, double quote and newline in a label value cannot break the line."""
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = render([labelled("m", "gauge", "h", [({"peer": 'x"\n\\'}, 1)])]).decode()
    assert 'm{peer="x\\"\\n\\\\"} 1\n' in text
    assert text.count("\n") == 3


def test_help_is_escaped_but_keeps_quotes():
    """HELP escapes backslash and newline only."""
    assert escape_help('say "hi"\\\nthere') == 'say "hi"\\\\\\nthere'


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (12345678901234, "12345678901234"),
        (1.5, "1.5"),
        (2.0, "2"),
        (None, "NaN"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (True, "1"),
        (1e300, "1e+300"),
    ],
)
def test_values(value, text):
    """Integers without a point, NaN for unknown, the infinities as Prometheus spells them."""
    assert format_value(value) == text


@pytest.mark.parametrize("name", ["", "9lives", "has-dash", "sp ace", "é"])
def test_bad_metric_names_are_refused(name):
    """A name the format cannot carry fails when the metric is made, not in a scraper."""
    with pytest.raises(ValueError, match="metric name"):
        Metric(name, "gauge", "h")


@pytest.mark.parametrize("label", ["", "1a", "a-b", "__reserved"])
def test_bad_label_names_are_refused(label):
    """Label names follow the format's rule; ``__`` names are Prometheus' own."""
    with pytest.raises(ValueError, match="label name"):
        Sample(1, ((label, "v"),))


def test_unknown_type_and_duplicate_family_are_refused():
    """Only counter and gauge; a family named twice is a bug in the caller."""
    with pytest.raises(ValueError, match="type"):
        Metric("m", "histogram", "h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        render([gauge("m", "h", 1), gauge("m", "h", 2)])


def test_nothing_renders_as_nothing():
    """No families: an empty body."""
    assert render([]) == b""


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), st.integers(0, 2**53))
def test_any_label_value_round_trips(peer, n):
    """Whatever a peer name holds, a reader of the format gets it back exactly."""
    samples, types = parse(
        render([labelled("m_total", "counter", "h", [({"peer": peer}, n)])]).decode()
    )
    assert types == {"m_total": "counter"}
    assert samples == {("m_total", frozenset({("peer", peer)})): float(n)}
