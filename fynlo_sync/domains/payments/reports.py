"""Revenue and settlement reports from the ledger, as rows, CSV, and a picture.

Both read posting sets only (never the orders), per UTC day, method and currency:

* **revenue**: ``payments`` (capture sets), ``collected`` (gross - change), ``tips``,
  ``processing_fee``, ``platform_fee``, ``refunds``, ``net`` (what the restaurant keeps:
  collected - fees - tips - refunds). Platform revenue is the sum of ``platform_fee``.
* **settlement**: what each method hands over that day: ``collected``, ``refunds``,
  ``processing_fee``, ``settled`` (collected - refunds - processing fee: the processor's
  payout, or the drawer's cash), ``tips_payable`` (owed to staff in full) and
  ``platform_fee`` (invoiced by the platform).
* **tips**: what each employee is owed, per day and currency, from the ``tips:<employee>``
  accounts (``pool`` for tips taken without an employee): ``tips`` (the sum of the
  account's entries: passed through in full, less any reversed with its payment) and
  ``payments`` (capture sets that carried a tip to that account).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from fynlo_sync.domains.payments.ledger import PostingSet

__all__ = [
    "REVENUE_COLUMNS",
    "SETTLEMENT_COLUMNS",
    "TIPS_COLUMNS",
    "revenue",
    "settlement",
    "tips",
]

TIPS_ACCOUNT: Final = "tips:"

REVENUE_COLUMNS: Final = (
    "day",
    "method",
    "currency",
    "payments",
    "collected",
    "tips",
    "processing_fee",
    "platform_fee",
    "refunds",
    "net",
)
SETTLEMENT_COLUMNS: Final = (
    "day",
    "method",
    "currency",
    "collected",
    "refunds",
    "processing_fee",
    "settled",
    "tips_payable",
    "platform_fee",
)


TIPS_COLUMNS: Final = ("day", "employee", "currency", "payments", "tips")


def _rows(
    sets: Iterable[PostingSet], first: str, last: str
) -> dict[tuple[str, str, str], dict[str, int]]:
    rows: dict[tuple[str, str, str], dict[str, int]] = {}
    for s in sets:
        if not first <= s.day <= last:
            continue
        row = rows.setdefault(
            (s.day, s.method, s.currency),
            dict.fromkeys(
                (
                    "payments",
                    "gross",
                    "change",
                    "tips",
                    "processing_fee",
                    "platform_fee",
                    "refunds",
                ),
                0,
            ),
        )
        if s.event == "capture":
            row["payments"] += 1
        for p in s.postings:
            if p.kind == "gross":
                row["gross"] += -p.amount
            elif p.kind == "change":
                row["change"] += p.amount
            elif p.kind == "tip":
                row["tips"] += p.amount
            elif p.kind == "processor_fee":
                row["processing_fee"] += p.amount
            elif p.kind == "platform_fee":
                row["platform_fee"] += p.amount
            elif p.kind == "refund" and p.account == "customer":
                row["refunds"] += p.amount
    return dict(sorted(rows.items()))


def _figures(sets: Iterable[PostingSet], first: str, last: str) -> list[dict[str, Any]]:
    """Every figure of both reports, one row per (day, method, currency)."""
    out = []
    for (day, method, currency), r in _rows(sets, first, last).items():
        collected = r["gross"] - r["change"]
        fees = r["processing_fee"] + r["platform_fee"]
        out.append(
            {
                "day": day,
                "method": method,
                "currency": currency,
                "payments": r["payments"],
                "collected": collected,
                "tips": r["tips"],
                "tips_payable": r["tips"],
                "processing_fee": r["processing_fee"],
                "platform_fee": r["platform_fee"],
                "refunds": r["refunds"],
                "net": collected - fees - r["tips"] - r["refunds"],
                "settled": collected - r["refunds"] - r["processing_fee"],
            }
        )
    return out


def revenue(sets: Iterable[PostingSet], first: str, last: str) -> list[dict[str, Any]]:
    """Revenue rows for the days ``first`` to ``last`` (inclusive, ``YYYY-MM-DD``)."""
    return [{c: row[c] for c in REVENUE_COLUMNS} for row in _figures(sets, first, last)]


def settlement(sets: Iterable[PostingSet], first: str, last: str) -> list[dict[str, Any]]:
    """Settlement rows for the days ``first`` to ``last`` (inclusive)."""
    return [{c: row[c] for c in SETTLEMENT_COLUMNS} for row in _figures(sets, first, last)]


def tips(sets: Iterable[PostingSet], first: str, last: str) -> list[dict[str, Any]]:
    """Tip rows per (day, employee, currency) for the days ``first`` to ``last``, from the
    entries of the ``tips:<employee>`` accounts only."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in sets:
        if not first <= s.day <= last:
            continue
        for p in s.postings:
            if not p.account.startswith(TIPS_ACCOUNT):
                continue
            employee = p.account[len(TIPS_ACCOUNT) :]
            row = rows.setdefault(
                (s.day, employee, s.currency),
                {
                    "day": s.day,
                    "employee": employee,
                    "currency": s.currency,
                    "payments": 0,
                    "tips": 0,
                },
            )
            row["tips"] += p.amount
            if s.event == "capture":
                row["payments"] += 1
    return [rows[k] for k in sorted(rows)]
