"""The downloads chart: one bar per day, scaled to the peak, every text escaped."""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET

from minirepo.svgchart import bar_chart

SVG = "{http://www.w3.org/2000/svg}"


def days(counts: list[int]) -> list[tuple[datetime.date, int]]:
    start = datetime.date(2024, 1, 1)
    return [(start + datetime.timedelta(days=n), count) for n, count in enumerate(counts)]


def parse(markup: str) -> ET.Element:
    """Well-formed XML, as inline SVG must be (our own markup: no untrusted XML here)."""
    return ET.fromstring(markup)  # noqa: S314


def test_one_bar_per_day_scaled_to_the_peak() -> None:
    markup = bar_chart(days([0, 5, 10] + [0] * 27), label="Downloads")
    root = parse(markup)
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 30
    heights = [float(bar.attrib["height"]) for bar in bars[:3]]
    assert heights[0] == 0
    assert heights[2] == 2 * heights[1] > 0
    assert bars[1].findtext(f"{SVG}title") == "2024-01-02: 5"
    assert root.attrib["aria-label"] == "Downloads"
    assert "2024-01-30" in markup
    assert "max 10" in markup


def test_no_downloads_draws_empty_bars_without_dividing_by_zero() -> None:
    root = parse(bar_chart(days([0] * 30), label="Downloads"))
    assert {bar.attrib["height"] for bar in root.findall(f"{SVG}rect")} == {"0.0"}


def test_no_points_is_still_a_chart() -> None:
    root = parse(bar_chart([], label="Nothing yet"))
    assert root.findall(f"{SVG}rect") == []


def test_every_text_is_escaped_and_nothing_is_styled_inline() -> None:
    hostile = '"><script>alert(1)</script><svg onload="alert(2)'
    markup = bar_chart(days([1, 2]), label=hostile)
    assert "<script" not in markup
    assert 'onload="' not in markup
    root = parse(markup)
    assert root.attrib["aria-label"] == hostile  # escaped in the markup, intact as text
    assert not re.search(r"\sstyle=", markup)  # the CSP allows no inline style
