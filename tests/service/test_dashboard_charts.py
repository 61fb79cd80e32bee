"""Histograms and score formatting: the pictures instructors decide from must count right and read right."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from grader.instructor.charts import describe, fmt, histogram, render_svg


def test_small_integer_scale_gets_a_bar_per_point() -> None:
    """Does a 20-point deliverable get 21 bars (0 … 20), each counting exactly its score?"""
    h = histogram("Simple", [20, 20, 17, 0, 11.0], 20)
    assert len(h.bins) == 21
    counts = {b.label: b.count for b in h.bins if b.count}
    assert counts == {"0": 1, "11": 1, "17": 1, "20": 2}
    assert h.values == 5 and h.peak == 2


def test_large_scale_gets_ten_ranges_with_the_top_included() -> None:
    """Does a 100-point total get ten ranges, with 100 in the last one and 90 not in the one before?"""
    h = histogram("Total", [100, 90, 89.5, 0, 9.99, 10], 100)
    assert len(h.bins) == 10
    assert [b.count for b in h.bins] == [2, 1, 0, 0, 0, 0, 0, 0, 1, 2]
    assert h.bins[-1].words == "90 to 100 points"
    assert h.bins[0].words == "0 to under 10 points"


def test_out_of_range_scores_are_clamped_not_dropped() -> None:
    """Are scores below 0 or above the maximum counted at the ends rather than lost?"""
    h = histogram("D", [-3, 25], 20)
    assert h.bins[0].count == 1 and h.bins[-1].count == 1 and h.values == 2


def test_description_says_what_the_bars_show() -> None:
    """Does the text alternative list how many students fall in each non-empty bar?"""
    assert describe(histogram("D", [], 20)) == "No graded submissions yet."
    text = describe(histogram("D", [20, 20, 11], 20))
    assert text == "3 students: 1 with 11 points, 2 with 20 points."


def test_svg_is_wellformed_accessible_and_escaped() -> None:
    """Is the SVG valid XML with role=img, a title naming the maximum, a description, and escaped text?"""
    svg = str(render_svg(histogram('<script>alert("x")</script>', [3, 4], 5), "hist-x"))
    root = ET.fromstring(svg)  # noqa: S314  (our own output)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "hist-x-title hist-x-desc"
    title = root.find(f"{ns}title")
    assert title is not None and title.text == '<script>alert("x")</script> (out of 5 points)'
    assert "<script>" not in svg
    desc = root.find(f"{ns}desc")
    assert desc is not None and desc.text == "2 students: 1 with 3 points, 1 with 4 points."
    bars = root.findall(f"{ns}rect")
    assert len(bars) == 6
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights[3] == heights[4] > 0 and sum(heights) == heights[3] * 2


def test_per_point_chart_labels_do_not_crowd() -> None:
    """Does a 21-bar chart label at most 11 points on its x axis, always including 0 and the maximum?"""
    svg = str(render_svg(histogram("D", [1], 20), "h"))
    ticks = re.findall(r'<text class="tick"[^>]*y="16\d"[^>]*>([^<]+)</text>', svg)
    assert ticks[0] == "0" and ticks[-1] == "20" and len(ticks) <= 11


def test_scores_are_written_as_people_write_them() -> None:
    """Is 20.0 shown as 20, 12.499999 as 12.5, and a missing score as a dash?"""
    assert fmt(20.0) == "20"
    assert fmt(12.4999999) == "12.5"
    assert fmt(None) == "—"
    assert fmt(0) == "0"
