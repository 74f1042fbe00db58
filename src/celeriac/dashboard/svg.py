"""Charts as inline SVG, drawn on the server: no JavaScript chart library, nothing for the CSP to allow.

Every value that reaches the markup is a number or passes through :func:`markupsafe.escape`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 640, 160, 44, 20, 8


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.3g}"


def bars(
    starts: Sequence[int],
    series: Sequence[tuple[str, Sequence[float], str]],
    title: str,
    unit: str = "",
) -> Markup:
    """Stacked bars: ``series`` = (label, values, css class) drawn bottom-up per bucket."""
    n = len(starts)
    top = max([sum(s[1][i] for s in series) for i in range(n)] or [0]) or 1
    plot_w, plot_h = WIDTH - PAD_L - 4, HEIGHT - PAD_B - PAD_T
    bw = plot_w / max(n, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - 4}" y2="{PAD_T + plot_h}"/>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end">'
        f"{_fmt(top)}{escape(unit)}</text>",
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end">0</text>',
    ]
    for i in range(n):
        y = float(PAD_T + plot_h)
        tip = [time.strftime("%Y-%m-%d %H:%M", time.gmtime(starts[i])) + " UTC"]
        for label, values, css in series:
            v = values[i]
            if not v:
                continue
            h = v / top * plot_h
            y -= h
            parts.append(
                f'<rect class="{escape(css)}" x="{PAD_L + i * bw + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}"/>'
            )
            tip.append(f"{label}: {_fmt(v)}{unit}")
        if len(tip) > 1:
            parts.append(
                f'<rect class="hit" x="{PAD_L + i * bw:.1f}" y="{PAD_T}" width="{bw:.1f}" '
                f'height="{plot_h}"><title>{escape(" / ".join(tip))}</title></rect>'
            )
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        i = min(n - 1, int(frac * (n - 1))) if n else 0
        if n:
            label = time.strftime(
                "%H:%M" if starts[-1] - starts[0] < 86_400 * 2 else "%m-%d", time.gmtime(starts[i])
            )
            x = PAD_L + i * bw + bw / 2
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">{label}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
