"""The labour report, pure: hours per employee per day and week (regular, overtime, double
time, breaks, approved or not), cost from wage rates, as rows, CSV and an SVG picture.

Time is integer milliseconds; cost is integer minor units, each bucket rounded half-up to
the minor unit (:func:`~fynlo_sync.domains.timeclock.rules.labour_cost`), overtime at 1.5x
and double time at 2x of the employee's ``wage_per_hour``. Overtime not yet approved is
shown as ``pending`` and costs nothing until a manager approves it; refused overtime counts
0 (Odoo's rule).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape

from fynlo_sync.domains.timeclock.rules import HOUR_MS, labour_cost
from fynlo_sync.ops import Record

__all__ = ["DAYS", "LabourReport", "LabourRow", "labour_report"]

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_COLUMNS: Final = (
    "employee_id",
    "name",
    "day",
    "worked_ms",
    "regular_ms",
    "overtime_ms",
    "double_ms",
    "pending_ms",
    "breaks_ms",
    "approval",
    "cost",
    "currency",
)


@dataclass(frozen=True, slots=True)
class LabourRow:
    employee_id: str
    name: str
    day: str  # Mon..Sun, or "week"
    worked_ms: int
    regular_ms: int
    overtime_ms: int
    double_ms: int
    pending_ms: int
    breaks_ms: int
    approval: str | None
    cost: int | None
    currency: str | None

    def to_json(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in _COLUMNS}


@dataclass(frozen=True, slots=True)
class LabourReport:
    week: str
    rows: tuple[LabourRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {"week": self.week, "rows": [r.to_json() for r in self.rows]}

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_COLUMNS)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in row.to_json().values()])
        return out.getvalue()

    def svg(self) -> str:
        """Hours per employee per day: regular, overtime, double and pending stacked, one
        bar per employee (initials under it), the axis scaled to the longest day."""
        people = [r for r in self.rows if r.day == "week"]
        colours = (
            ("regular_ms", "#4c78a8"),
            ("overtime_ms", "#f58518"),
            ("double_ms", "#e45756"),
            ("pending_ms", "#bab0ac"),
        )
        days = [r for r in self.rows if r.day != "week"]
        longest = max((sum(getattr(r, n) for n, _ in colours) for r in days), default=0)
        top_h = max(8, -(-longest // HOUR_MS) + 1)
        top_h += top_h % 2
        plot, bar, gap, left, top = 200, 16, 14, 60, 40
        scale = plot / top_h  # px per hour
        group = bar * max(1, len(people)) + gap
        width = left + 7 * group + 180
        height = top + plot + 70
        parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            "font-family='sans-serif' font-size='11'>",
            f"<text x='10' y='20' font-size='14'>Labour, week of {escape(self.week)}: hours "
            "per employee per day</text>",
        ]
        base = top + plot
        for h in range(0, top_h + 1, 2):
            y = base - h * scale
            parts.append(
                f"<line x1='{left - 4}' x2='{left + 7 * group}' y1='{y:.1f}' y2='{y:.1f}' "
                f"stroke='#eee'/><text x='{left - 34}' y='{y + 4:.1f}'>{h} h</text>"
            )
        by = {(r.employee_id, r.day): r for r in self.rows}
        for d, day in enumerate(DAYS):
            x0 = left + d * group
            parts.append(f"<text x='{x0}' y='{base + 28}'>{day}</text>")
            for p, person in enumerate(people):
                x = x0 + p * bar
                parts.append(
                    f"<text x='{x + 2}' y='{base + 12}' font-size='9'>"
                    f"{escape(person.name[:2])}</text>"
                )
                row = by.get((person.employee_id, day))
                if row is None:
                    continue
                y = float(base)
                for name, colour in colours:
                    h = getattr(row, name) / HOUR_MS * scale
                    if h <= 0:
                        continue
                    y -= h
                    parts.append(
                        f"<rect x='{x}' y='{y:.1f}' width='{bar - 2}' height='{h:.1f}' "
                        f"fill='{colour}'><title>{escape(person.name)} {day} {name[:-3]}: "
                        f"{getattr(row, name) / HOUR_MS:.2f} h</title></rect>"
                    )
        right = left + 7 * group + 10
        for p, person in enumerate(people):
            parts.append(
                f"<text x='{right}' y='{top + 14 * p}'>{escape(person.name)}: "
                f"{person.worked_ms / HOUR_MS:.1f} h, cost {person.cost} "
                f"{escape(person.currency or '')}</text>"
            )
        for i, (name, colour) in enumerate(colours):
            parts.append(
                f"<rect x='{10 + i * 110}' y='{height - 22}' width='10' height='10' "
                f"fill='{colour}'/><text x='{24 + i * 110}' y='{height - 13}'>{name[:-3]}</text>"
            )
        parts.append("</svg>")
        return "\n".join(parts)


def _cost(row: Mapping[str, int], wage: int | None) -> int | None:
    if wage is None:
        return None
    return (
        labour_cost(row["regular_ms"], 100, wage)
        + labour_cost(row["overtime_ms"], 150, wage)
        + labour_cost(row["double_ms"], 200, wage)
    )


def labour_report(
    week: str, timecards: Iterable[Record], employees: Iterable[Record]
) -> LabourReport:
    """The report of ``week`` (the ISO date of its Monday) from the tenant's records."""
    people = {r.record_id: r.fields for r in employees if not r.deleted}
    rows: list[LabourRow] = []
    cards = sorted(
        (r for r in timecards if not r.deleted and r.fields.get("week") == week),
        key=lambda r: r.fields["employee_id"],
    )
    for card in cards:
        f = card.fields
        employee = f["employee_id"]
        person = people.get(employee, {})
        name = str(person.get("name") or employee)
        wage, currency = person.get("wage_per_hour"), person.get("currency")
        breaks = [0] * 7
        for shift in f.get("shifts") or []:
            breaks[shift["day"]] += shift["paid_break_ms"] + shift["unpaid_break_ms"]
        for d, day in enumerate(f.get("days") or []):
            approval = day["approval"]
            counted = approval == "approved"
            figures = {
                "regular_ms": day["regular_ms"],
                "overtime_ms": day["overtime_ms"] if counted else 0,
                "double_ms": day["double_ms"] if counted else 0,
            }
            pending = day["overtime_ms"] + day["double_ms"] if approval == "to_approve" else 0
            if not day["worked_ms"] and not breaks[d]:
                continue
            rows.append(
                LabourRow(
                    employee,
                    name,
                    DAYS[d],
                    day["worked_ms"],
                    figures["regular_ms"],
                    figures["overtime_ms"],
                    figures["double_ms"],
                    pending,
                    breaks[d],
                    approval,
                    _cost(figures, wage),
                    currency,
                )
            )
        totals = {k: f[k] for k in ("regular_ms", "overtime_ms", "double_ms")}
        rows.append(
            LabourRow(
                employee,
                name,
                "week",
                f["worked_ms"],
                f["regular_ms"],
                f["overtime_ms"],
                f["double_ms"],
                f["pending_ms"],
                sum(breaks),
                None,
                _cost(totals, wage),
                currency,
            )
        )
    return LabourReport(week, tuple(rows))
