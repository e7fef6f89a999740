"""The payments reports as files: CSV, and the revenue picture (SVG: stacked bars of money
collected per day, one colour per method). Not part of the pure core (it formats text)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["axis_step", "revenue_svg", "to_csv"]


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


_COLOURS: Final = {
    "cash": "#43a047",
    "card": "#1e88e5",
    "open_banking": "#8e24aa",
    "apple_pay": "#424242",
}
_W, _H, _L, _B, _T = 900, 420, 90, 70, 60


def axis_step(top: int, most: int = 5) -> int:
    """The smallest round step (1, 2 or 5 times a power of ten, at least 1) of which at
    most ``most`` reach ``top``: the axis reads 0, 200, 400... up to the bar just above
    the highest, instead of fractions of the maximum."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * most >= top:
                return m * step
        step *= 10


def _major(minor: int) -> str:
    """Minor units as major units with two decimals (``80912`` -> ``809.12``)."""
    return f"{minor // 100:,}.{minor % 100:02d}"


def revenue_svg(rows: Sequence[dict[str, Any]], title: str = "Revenue per day by method") -> str:
    """Stacked bars: money collected per day, one colour per method, one currency (the
    first one in the rows; others are named in the subtitle, not drawn)."""
    e = html.escape
    currencies = sorted({r["currency"] for r in rows})
    currency = currencies[0] if currencies else ""
    days = sorted({r["day"] for r in rows if r["currency"] == currency})
    methods = [m for m in _COLOURS if any(r["method"] == m for r in rows)]
    per_day = {d: {m: 0 for m in methods} for d in days}
    for r in rows:
        if r["currency"] == currency:
            per_day[r["day"]][r["method"]] += r["collected"] - r["refunds"]
    highest = max([sum(v.values()) for v in per_day.values()] + [1])
    step = axis_step(highest)
    ticks = max(1, -(-highest // step))  # ceiling division
    top = ticks * step
    plot_h = _H - _T - _B
    span = _W - _L - 30
    slot = span / max(len(days), 1)
    bar = min(60.0, slot * 0.6)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' "
        f"viewBox='0 0 {_W} {_H}' font-family='Helvetica, Arial, sans-serif'>",
        f"<rect width='{_W}' height='{_H}' fill='white'/>",
        f"<text x='{_L}' y='26' font-size='17' font-weight='bold'>{e(title)}</text>",
        f"<text x='{_L}' y='44' font-size='12' fill='#444'>collected - refunds, in "
        f"{e(currency)}; {len(days)} {'day' if len(days) == 1 else 'days'}"
        + (f"; also in {', '.join(currencies[1:])}" if len(currencies) > 1 else "")
        + "</text>",
        f"<line x1='{_L}' y1='{_T}' x2='{_L}' y2='{_T + plot_h}' stroke='#666'/>",
        f"<line x1='{_L}' y1='{_T + plot_h}' x2='{_L + span}' y2='{_T + plot_h}' stroke='#666'/>",
    ]
    for k in range(ticks + 1):
        value = step * k
        y = _T + plot_h - plot_h * k / ticks
        parts.append(
            f"<text x='{_L - 6}' y='{y + 4:.1f}' font-size='10' text-anchor='end'>"
            f"{_major(value)}</text>"
        )
        parts.append(f"<line x1='{_L}' y1='{y:.1f}' x2='{_L + span}' y2='{y:.1f}' stroke='#eee'/>")
    for i, day in enumerate(days):
        x = _L + slot * i + (slot - bar) / 2
        y = float(_T + plot_h)
        for method in methods:
            value = per_day[day][method]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f"<rect class='bar' data-day='{day}' data-method='{method}' "
                f"data-value='{value}' x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' "
                f"height='{h:.1f}' fill='{_COLOURS[method]}'><title>{day} {method}: "
                f"{_major(value)}</title></rect>"
            )
        parts.append(
            f"<text x='{x + bar / 2:.1f}' y='{y - 4:.1f}' font-size='10' "
            f"text-anchor='middle'>{_major(sum(per_day[day].values()))}</text>"
        )
        parts.append(
            f"<text x='{x + bar / 2:.1f}' y='{_T + plot_h + 16}' font-size='10' "
            f"text-anchor='middle'>{day}</text>"
        )
    lx = _L
    for method in methods:
        parts.append(
            f"<rect x='{lx}' y='{_H - 26}' width='12' height='12' fill='{_COLOURS[method]}'/>"
        )
        parts.append(f"<text x='{lx + 16}' y='{_H - 16}' font-size='11'>{method}</text>")
        lx += 120
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
