"""``fynlo report revenue|settlement|tips --tenant T [--from DAY] [--to DAY] [--json|--csv]
[--svg FILE]``: the payments reports from the ledger of a tenant in the database
``FYNLO_DATABASE_URL`` names (embedded SQLite or PostgreSQL).

Posting sets come from the ``ledger`` collection; sets an order calls for that are not
written yet (the ledger effect has not run) are derived from the order and counted as
``pending`` in the output, so the report is complete and says what it read.

Only the standard library at the top: the handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _report(args: argparse.Namespace) -> int:
    import anyio

    import conflict
    from fynlo_sync.cli import require
    from fynlo_sync.domains.payments.ledger import ledger_of
    from fynlo_sync.domains.payments.render import revenue_svg, to_csv
    from fynlo_sync.domains.payments.reports import (
        REVENUE_COLUMNS,
        SETTLEMENT_COLUMNS,
        TIPS_COLUMNS,
        revenue,
        settlement,
        tips,
    )
    from fynlo_sync.errors import FynloError
    from fynlo_sync.plugin_loader import load_plugins, plugin_specs
    from server.backends import open_backend
    from server.settings import Settings

    env = dict(os.environ)
    if not env.get("FYNLO_SECRET_KEY"):
        env["FYNLO_ENV"] = "dev"  # a report signs nothing
    try:
        settings = Settings.from_env(env)
        if settings.kind == "postgres":
            require("postgres")
        registry = conflict.registry(load_plugins(plugin_specs(os.environ), os.environ))
    except FynloError as exc:
        print(f"fynlo report: {exc.detail}", file=sys.stderr)
        return 2

    async def read() -> list[Any]:
        backend = await open_backend(
            settings, registry, lambda: 0, lambda t, c: None, migrate=False
        )
        try:
            return list(await backend.records(args.tenant))
        finally:
            await backend.close()

    sets, written, pending = ledger_of(anyio.run(read))
    first, last = args.from_day or "0000-01-01", args.to_day or "9999-12-31"
    columns: tuple[str, ...]
    if args.report == "revenue":
        rows, columns = revenue(sets, first, last), REVENUE_COLUMNS
    elif args.report == "tips":
        rows, columns = tips(sets, first, last), TIPS_COLUMNS
    else:
        rows, columns = settlement(sets, first, last), SETTLEMENT_COLUMNS
    if args.svg:
        picture = revenue_svg(
            revenue(sets, first, last), f"Revenue per day by method: {args.tenant}"
        )
        Path(args.svg).write_text(picture, encoding="utf-8")
    if args.csv:
        sys.stdout.write(to_csv(rows, columns))
    elif args.json:
        platform = sum(r["platform_fee"] for r in revenue(sets, first, last))
        print(
            json.dumps(
                {
                    "tenant": args.tenant,
                    "report": args.report,
                    "from": first,
                    "to": last,
                    "posting_sets": {"written": written, "pending": pending},
                    "platform_revenue": platform,
                    "tips_total": sum(r["tips"] for r in tips(sets, first, last)),
                    "rows": rows,
                },
                sort_keys=True,
            )
        )
    else:
        print("  ".join(columns))
        for row in rows:
            print("  ".join(str(row[c]) for c in columns))
        print(f"{written} posting sets from the ledger, {pending} pending", file=sys.stderr)
    return 0


def _report_kinds(subparsers: Any) -> Any:
    """The subcommands of ``fynlo report``, shared with other features' reports (the
    time clock's ``labour``): made here unless a module registered earlier made them."""
    report = subparsers.choices.get("report")
    if report is None:
        report = subparsers.add_parser("report", help="reports (payments, labour)")
        return report.add_subparsers(dest="report", required=True)
    for action in report._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return report.add_subparsers(dest="report", required=True)


def register(subparsers: Any) -> None:
    sub = _report_kinds(subparsers)
    for kind, text in (
        ("revenue", "revenue per day and method: collected, tips, fees, net"),
        ("settlement", "what each method settles per day, tips payable, platform fee"),
        ("tips", "tips owed per employee and day, from the tips:<employee> accounts"),
    ):
        p = sub.add_parser(kind, help=text)
        p.add_argument("--tenant", required=True)
        p.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD")
        p.add_argument("--to", dest="to_day", metavar="YYYY-MM-DD")
        fmt = p.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true")
        fmt.add_argument("--csv", action="store_true")
        p.add_argument("--svg", metavar="FILE", help="also draw revenue per day by method")
        p.set_defaults(func=_report, needs=("server",))
