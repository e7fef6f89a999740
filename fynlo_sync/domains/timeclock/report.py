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
        """Hours per employee per day: regular, overtime, double and pending stacked."""
        people = [r for r in self.rows if r.day == "week"]
        colours = (
            ("regular_ms", "#4c78a8"),
            ("overtime_ms", "#f58518"),
            ("double_ms", "#e45756"),
            ("pending_ms", "#bab0ac"),
        )
        scale, bar, gap, left, top = 12.0, 14, 6, 120, 40  # px per hour
        width = left + 7 * (bar * max(1, len(people)) + gap * 3) + 40
        height = top + int(14 * scale) + 70
        parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            "font-family='sans-serif' font-size='11'>",
            f"<text x='10' y='20' font-size='14'>Labour, week of {escape(self.week)}: hours "
            "per employee per day</text>",
        ]
        base = top + int(14 * scale)
        by = {(r.employee_id, r.day): r for r in self.rows}
        for d, day in enumerate(DAYS):
            x0 = left + d * (bar * max(1, len(people)) + gap * 3)
            parts.append(f"<text x='{x0}' y='{base + 14}'>{day}</text>")
            for p, person in enumerate(people):
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
                        f"<rect x='{x0 + p * bar}' y='{y:.1f}' width='{bar - 2}' "
                        f"height='{h:.1f}' fill='{colour}'><title>{escape(person.name)} "
                        f"{day} {name[:-3]}: {getattr(row, name) / HOUR_MS:.2f} h</title></rect>"
                    )
        for h in range(0, 15, 2):
            y = base - h * scale
            parts.append(f"<text x='{left - 30}' y='{y:.1f}'>{h} h</text>")
        for i, (name, colour) in enumerate(colours):
            parts.append(
                f"<rect x='{10 + i * 110}' y='{height - 30}' width='10' height='10' "
                f"fill='{colour}'/><text x='{24 + i * 110}' y='{height - 21}'>{name[:-3]}</text>"
            )
        for p, person in enumerate(people):
            parts.append(
                f"<text x='10' y='{top + 14 * p}'>{escape(person.name)}: "
                f"{person.worked_ms / HOUR_MS:.1f} h</text>"
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
