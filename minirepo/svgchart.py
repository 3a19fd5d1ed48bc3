"""A small bar chart as SVG markup, drawn on the server: the project page's downloads.

Inline SVG needs no script and no image request, so the CSP stays strict. The markup has
no `style` attribute (the CSP allows no inline style): the stylesheet colours `.chart`'s
rect, text and line. Every text written is escaped here, because the caller inserts the
result into a page as markup. No Flask: a pure function of its points.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

WIDTH = 600
HEIGHT = 140
# Room under the bars for the date labels, above them for the peak's label.
BOTTOM = 20
TOP = 14
GAP = 2


def bar_chart(
    points: Sequence[tuple[datetime.date, int]],
    *,
    label: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """One bar per point, oldest at the left; each bar says its day and count on hover
    (`<title>`) and the whole chart says what it is to a screen reader (`aria-label`)."""
    peak = max((count for _, count in points), default=0)
    base = height - BOTTOM
    slot = width / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_escape(label)}</title>",
    ]
    for number, (day, count) in enumerate(points):
        tall = (base - TOP) * count / peak if peak else 0
        parts.append(
            f'<rect x="{number * slot + GAP / 2:.1f}" y="{base - tall:.1f}" '
            f'width="{max(slot - GAP, 1):.1f}" height="{tall:.1f}">'
            f"<title>{_escape(f'{day.isoformat()}: {count}')}</title></rect>"
        )
    parts.append(f'<line x1="0" y1="{base}" x2="{width}" y2="{base}"></line>')
    if points:
        last = height - 6
        parts.append(f'<text x="0" y="{last}">{_escape(points[0][0].isoformat())}</text>')
        parts.append(
            f'<text x="{width}" y="{last}" text-anchor="end">'
            f"{_escape(points[-1][0].isoformat())}</text>"
        )
    parts.append(f'<text x="0" y="{TOP - 3}">{_escape(f"max {peak}")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
