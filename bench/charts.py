"""Small SVG charts for the bench scripts' results (no plotting library, no network).

Deterministic: the same numbers give the same bytes, so a test can check that
a committed chart is the drawing of its committed results.

* :func:`ratio_bars`: horizontal bars of ratios against a baseline (1.0), with a
  target line;
* :func:`percentile_ladders`: per server, its latency percentiles on a log
  axis (p50 dot, p90-p99 bar, p99.9 tick), so distributions sit side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family='DejaVu Sans, Arial, sans-serif' font-size='12'"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
GREY, RED, INK = "#bbbbbb", "#d62728", "#222222"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f"<text x='{_num(x)}' y='{_num(y)}' text-anchor='{anchor}' {FONT}{extra}>{escape(s)}</text>"
    )


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_num(width)}' height='{_num(height)}'"
        f" viewBox='0 0 {_num(width)} {_num(height)}'>\n"
        f"<title>{escape(title)}</title>\n"
        f"<rect width='100%' height='100%' fill='white'/>\n" + "\n".join(body) + "\n</svg>\n"
    )


@dataclass(frozen=True)
class Bar:
    group: str  # e.g. "lean client, 100 x 200"
    label: str  # e.g. "legalstream"
    value: float


def ratio_bars(bars: Sequence[Bar], *, title: str, target: float, target_label: str) -> str:
    """Ratios as bars from 0, a line at 1 (the baseline) and a dashed one at ``target``."""
    labels = list(dict.fromkeys(b.label for b in bars))
    groups = list(dict.fromkeys(b.group for b in bars))
    colour = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    left, right, top, bar_h, gap = 190.0, 40.0, 50.0, 16.0, 14.0
    width = 720.0
    top_value = max([target, 1.0, *(b.value for b in bars)]) * 1.1
    scale = (width - left - right) / top_value
    body = [_text(width / 2, 20, title, "middle", " font-weight='bold'")]
    y = top
    for group in groups:
        body.append(_text(8, y + 11, group, extra=" font-weight='bold'"))
        y += bar_h + 2
        for b in (b for b in bars if b.group == group):
            w = max(b.value * scale, 1.0)
            body.append(
                f"<rect x='{_num(left)}' y='{_num(y)}' width='{_num(w)}' height='{_num(bar_h)}'"
                f" fill='{colour[b.label]}'/>"
            )
            body.append(_text(left - 6, y + 12, b.label, "end"))
            body.append(_text(left + w + 4, y + 12, f"{b.value:.2f}x"))
            y += bar_h + 3
        y += gap
    bottom = y
    for value, stroke, dash, name in (
        (1.0, INK, "", "baseline 1.0x"),
        (target, RED, " stroke-dasharray='5,4'", target_label),
    ):
        x = left + value * scale
        body.append(
            f"<line x1='{_num(x)}' y1='{_num(top - 8)}' x2='{_num(x)}' y2='{_num(bottom)}'"
            f" stroke='{stroke}'{dash}/>"
        )
        body.append(_text(x, bottom + 14, name, "middle", f" fill='{stroke}'"))
    return _svg(width, bottom + 26, body, title)


@dataclass(frozen=True)
class Ladder:
    panel: str  # e.g. "saturation, 100 x 200"
    label: str  # the server
    p50: float
    p90: float
    p99: float
    p999: float
    limit: float | None = None  # a target for p99 (ms), drawn on the baseline's row


def percentile_ladders(ladders: Sequence[Ladder], *, title: str) -> str:
    """Latency percentiles per server and panel, on one log axis (ms)."""
    panels = list(dict.fromkeys(lad.panel for lad in ladders))
    labels = list(dict.fromkeys(lad.label for lad in ladders))
    colours = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    values = [v for lad in ladders for v in (lad.p50, lad.p999, lad.limit or lad.p50)]
    lo = 10 ** math.floor(math.log10(max(min(values), 1e-3)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    left, right, top, row_h = 190.0, 56.0, 56.0, 20.0
    width = 740.0

    def x(ms: float) -> float:
        frac = (math.log10(max(ms, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return left + frac * (width - left - right)

    body = [
        _text(width / 2, 20, title, "middle", " font-weight='bold'"),
        _text(
            width / 2,
            38,
            "dot: p50 · bar: p90 to p99 · tick: p99.9 · dashed: 1.5x the baseline's p99",
            "middle",
            " fill='#555555'",
        ),
    ]
    y = top
    for panel in panels:
        body.append(_text(8, y + 12, panel, extra=" font-weight='bold'"))
        y += row_h
        rows = [lad for lad in ladders if lad.panel == panel]
        first = y
        for lad in rows:
            colour = colours[lad.label]
            mid = y + row_h / 2
            body.append(_text(left - 6, mid + 4, lad.label, "end"))
            body.append(
                f"<line x1='{_num(x(lad.p90))}' y1='{_num(mid)}' x2='{_num(x(lad.p99))}'"
                f" y2='{_num(mid)}' stroke='{colour}' stroke-width='6'/>"
            )
            body.append(
                f"<line x1='{_num(x(lad.p99))}' y1='{_num(mid)}' x2='{_num(x(lad.p999))}'"
                f" y2='{_num(mid)}' stroke='{colour}' stroke-width='1'/>"
            )
            body.append(
                f"<line x1='{_num(x(lad.p999))}' y1='{_num(mid - 5)}' x2='{_num(x(lad.p999))}'"
                f" y2='{_num(mid + 5)}' stroke='{colour}' stroke-width='2'/>"
            )
            body.append(f"<circle cx='{_num(x(lad.p50))}' cy='{_num(mid)}' r='4' fill='{INK}'/>")
            body.append(
                _text(width - right + 6, mid + 4, f"{lad.p99:.1f}", extra=" fill='#555555'")
            )
            y += row_h
        limit = next((lad.limit for lad in rows if lad.limit is not None), None)
        if limit is not None:
            body.append(
                f"<line x1='{_num(x(limit))}' y1='{_num(first)}' x2='{_num(x(limit))}'"
                f" y2='{_num(y)}' stroke='{RED}' stroke-dasharray='5,4'/>"
            )
        y += 10
    # The axis: decades, labelled in ms.
    decade = lo
    while decade <= hi * 1.0001:
        body.append(
            f"<line x1='{_num(x(decade))}' y1='{_num(top)}' x2='{_num(x(decade))}'"
            f" y2='{_num(y)}' stroke='{GREY}' stroke-width='0.5'/>"
        )
        body.append(_text(x(decade), y + 14, f"{decade:g} ms", "middle"))
        decade *= 10
    body.append(_text(width - right + 6, top - 4, "p99 ms", extra=" fill='#555555'"))
    return _svg(width, y + 26, body, title)
