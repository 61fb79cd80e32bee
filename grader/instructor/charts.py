"""Score histograms drawn as inline SVG on the server: no chart library, works without JavaScript.

`histogram()` turns scores into bins; `render_svg()` draws them with a title and a text description, so a
screen reader hears the same facts a sighted reader sees (the page also offers the numbers as a table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

from grader.templating import fmt

# Drawing box (user units; the SVG scales to its container through viewBox).
WIDTH, HEIGHT = 360, 190
LEFT, RIGHT, TOP, BOTTOM = 34, 10, 14, 40
# Integer scores up to this maximum get a bar per point; larger ranges are cut into TEN_BINS equal bins.
PER_POINT_LIMIT = 20
TEN_BINS = 10


@dataclass(frozen=True)
class Bin:
    """Scores from `low` up to `high` (excluded, except in the last bin) and how many fell there.

    A per-point bin holds exactly the score `low` (integer scores on a small scale get one bar per point).
    """

    low: float
    high: float
    count: int
    per_point: bool = False
    last: bool = False

    @property
    def label(self) -> str:
        """Short x-axis label: "7" for a per-point bin, "10-20" (en dash) for a range."""
        return fmt(self.low) if self.per_point else f"{fmt(self.low)}\u2013{fmt(self.high)}"

    @property
    def words(self) -> str:
        """The bin spelled out without ambiguity about its edges, e.g. "10 to under 20 points"."""
        if self.per_point:
            return f"{fmt(self.low)} points"
        upper = "to" if self.last else "to under"
        return f"{fmt(self.low)} {upper} {fmt(self.high)} points"


@dataclass(frozen=True)
class Histogram:
    """Binned scores of one deliverable (or of the total)."""

    title: str
    max_score: float
    bins: tuple[Bin, ...]
    values: int

    @property
    def peak(self) -> int:
        """The tallest bar's count (at least 1, so an empty chart still has a y scale)."""
        return max([b.count for b in self.bins] + [1])


def histogram(title: str, scores: list[float], max_score: float) -> Histogram:
    """Bin `scores` into a Histogram (scores outside 0..max_score are clamped to its ends)."""
    top = float(max_score) if max_score and max_score > 0 else max([1.0, *scores])
    per_point = top == int(top) and top <= PER_POINT_LIMIT
    count = int(top) + 1 if per_point else TEN_BINS
    width = 1.0 if per_point else top / TEN_BINS
    counts = [0] * count
    for score in scores:
        value = min(max(float(score), 0.0), top)
        counts[min(math.floor(value / width + 1e-9), count - 1)] += 1
    bins = tuple(
        Bin(
            low=i * width,
            high=top if (not per_point and i == count - 1) else (i + 1) * width,
            count=counts[i],
            per_point=per_point,
            last=i == count - 1,
        )
        for i in range(count)
    )
    return Histogram(title=title, max_score=top, bins=bins, values=len(scores))


def describe(h: Histogram) -> str:
    """One sentence listing the non-empty bins, for screen readers (the SVG's <desc>)."""
    if h.values == 0:
        return "No graded submissions yet."
    parts = [f"{b.count} with {b.words}" for b in h.bins if b.count]
    people = "student" if h.values == 1 else "students"
    return f"{h.values} {people}: " + ", ".join(parts) + "."


def render_svg(h: Histogram, element_id: str) -> Markup:
    """The histogram as an accessible inline SVG (role="img", titled, described)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    n = len(h.bins)
    slot = plot_w / n
    gap = min(4.0, slot * 0.2)
    title_id, desc_id = f"{element_id}-title", f"{element_id}-desc"
    out = [
        f'<svg class="histogram" id="{escape(element_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(h.title)} (out of {fmt(h.max_score)} points)</title>',
        f'<desc id="{desc_id}">{escape(describe(h))}</desc>',
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{LEFT + plot_w}" y2="{base}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>',
        f'<text class="tick" x="{LEFT - 5}" y="{base}" text-anchor="end" dy="0.35em">0</text>',
        f'<text class="tick" x="{LEFT - 5}" y="{TOP}" text-anchor="end" dy="0.35em">{h.peak}</text>',
        f'<text class="axis-label" x="10" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 10 {TOP + plot_h / 2:.1f})">students</text>',
    ]
    # Per-point charts can have 21 bars: label every other one so the numbers never overlap.
    label_every = max(1, math.ceil(n / 11))
    for i, b in enumerate(h.bins):
        x = LEFT + i * slot + gap / 2
        bar_h = plot_h * b.count / h.peak
        people = "student" if b.count == 1 else "students"
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - bar_h:.1f}" width="{slot - gap:.1f}" '
            f'height="{bar_h:.1f}"><title>{escape(b.words)}: {b.count} {people}</title></rect>'
        )
        if b.count:
            out.append(
                f'<text class="count" x="{x + (slot - gap) / 2:.1f}" y="{base - bar_h - 3:.1f}" '
                f'text-anchor="middle">{b.count}</text>'
            )
        if b.per_point and (i % label_every == 0 or b.last):
            # A per-point bar is labelled under its middle with its score.
            out.append(_tick(x + (slot - gap) / 2, base + 14, fmt(b.low)))
        elif not b.per_point:
            # A range bar is labelled at its left edge; the chart's right end gets the top score below.
            out.append(_tick(LEFT + i * slot, base + 14, fmt(b.low)))
    if not h.bins[-1].per_point:
        out.append(_tick(LEFT + plot_w, base + 14, fmt(h.bins[-1].high)))
    out.append(
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
        "points</text></svg>"
    )
    return Markup("".join(out))  # noqa: S704  (every interpolated text above is escaped or numeric)


def _tick(x: float, y: float, text: str) -> str:
    return f'<text class="tick" x="{x:.1f}" y="{y}" text-anchor="middle">{escape(text)}</text>'
