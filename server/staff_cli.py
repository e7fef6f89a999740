"""``fynlo employee add | list | deactivate | set-pin``, ``fynlo audit`` and
``fynlo report labour``.

Run against the database ``FYNLO_DATABASE_URL`` names, with the plugins of
``FYNLO_PLUGINS`` (the staff plugin among them). Writes are ops authored by the server's
own node, so they reach every terminal through the feed. ``set-pin`` reads the PIN from
``--pin`` or, without it, from standard input (so it stays out of the shell's history).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]

NEEDS = ("server",)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def _run(args: argparse.Namespace, job: Any) -> Any:
    from server.cli import _settings
    from server.staff import run_admin

    return run_admin(_settings(), job)


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from fynlo_sync.errors import FynloError

        try:
            result: int = fn(args)
            return result
        except FynloError as exc:
            print(f"fynlo {args.command}: {exc.detail}", file=sys.stderr)
            return 2

    return run


def _add(args: argparse.Namespace) -> int:
    from server.staff import add_employee

    outcome = _run(
        args,
        lambda b: add_employee(
            b,
            args.tenant,
            args.id,
            args.name,
            args.role,
            wage_per_hour=args.wage,
            currency=args.currency,
        ),
    )
    _emit(args, {"employee_id": args.id, "status": outcome.status}, f"{args.id}: added")
    return 0


def _list(args: argparse.Namespace) -> int:
    from server.staff import list_employees

    rows = _run(args, lambda b: list_employees(b, args.tenant))
    text = "\n".join(
        f"{r['employee_id']}\t{r['role']}\t{'active' if r['active'] else 'inactive'}\t{r['name']}"
        for r in rows
    )
    _emit(args, {"tenant_id": args.tenant, "employees": rows}, text)
    return 0


def _deactivate(args: argparse.Namespace) -> int:
    from server.staff import deactivate_employee

    outcome = _run(args, lambda b: deactivate_employee(b, args.tenant, args.id))
    _emit(args, {"employee_id": args.id, "status": outcome.status}, f"{args.id}: deactivated")
    return 0


def _set_pin(args: argparse.Namespace) -> int:
    from server.staff import _wall_ms, set_employee_pin

    pin = args.pin if args.pin is not None else sys.stdin.readline().strip()
    outcome = _run(args, lambda b: set_employee_pin(b, args.tenant, args.id, pin, _wall_ms()))
    _emit(args, {"employee_id": args.id, "pin_set": True, "status": outcome.status}, "PIN set")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from server.staff import audit

    rows = _run(args, lambda b: audit(b, args.tenant, args.actor))
    text = "\n".join(
        f"{r['node_id']}:{r['seq']}\t{r['actor'] or '-'}\t{r['status']}"
        f"{' ' + r['reason'] if r['reason'] else ''}\t"
        f"{r['collection'] or ''}/{r['record_id'] or ''}"
        for r in rows
    )
    _emit(args, {"tenant_id": args.tenant, "actor": args.actor, "ops": rows}, text)
    return 0


def _labour(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.staff import labour

    report = _run(args, lambda b: labour(b, args.tenant, args.week))
    if args.svg:
        Path(args.svg).write_text(report.svg(), encoding="utf-8")
    if args.csv:
        sys.stdout.write(report.csv())
    elif args.json:
        print(json.dumps(report.to_json(), sort_keys=True))
    else:
        for row in report.rows:
            print(
                f"{row.employee_id}\t{row.day}\t{row.worked_ms / 3_600_000:.2f} h\t"
                f"ot {row.overtime_ms / 3_600_000:.2f}\tdt {row.double_ms / 3_600_000:.2f}\t"
                f"pending {row.pending_ms / 3_600_000:.2f}\tcost {row.cost} {row.currency or ''}"
            )
    return 0


def _report_group(subparsers: Any) -> Any:
    """The ``report`` command's subcommands: shared with the payments reports (whichever
    module registers first creates ``report``; this one adds ``labour`` to it)."""
    existing = subparsers.choices.get("report")
    if existing is None:
        report = subparsers.add_parser("report", help="reports (revenue, settlement, labour)")
        return report.add_subparsers(dest="kind", required=True)
    for action in existing._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return existing.add_subparsers(dest="kind", required=True)


def register(subparsers: Any) -> None:
    employee = subparsers.add_parser("employee", help="a tenant's employees (staff plugin)")
    sub = employee.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", required=True)
        p.add_argument("--json", action="store_true")

    add = sub.add_parser("add", help="add an employee")
    common(add)
    add.add_argument("--id", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=["staff", "supervisor", "manager", "owner"])
    add.add_argument("--wage", type=int, help="wage per hour in minor units")
    add.add_argument("--currency")
    add.set_defaults(needs=NEEDS, func=_guard(_add))
    lst = sub.add_parser("list", help="list the tenant's employees (no secrets)")
    common(lst)
    lst.set_defaults(needs=NEEDS, func=_guard(_list))
    deact = sub.add_parser("deactivate", help="deactivate an employee")
    common(deact)
    deact.add_argument("--id", required=True)
    deact.set_defaults(needs=NEEDS, func=_guard(_deactivate))
    pin = sub.add_parser("set-pin", help="set an employee's PIN (from --pin or stdin)")
    common(pin)
    pin.add_argument("--id", required=True)
    pin.add_argument("--pin")
    pin.set_defaults(needs=NEEDS, func=_guard(_set_pin))
    aud = subparsers.add_parser("audit", help="the op log by actor")
    common(aud)
    aud.add_argument("--actor")
    aud.set_defaults(needs=NEEDS, func=_guard(_audit))
    which = _report_group(subparsers)
    lab = which.add_parser("labour", help="hours and cost per employee per day of a week")
    common(lab)
    lab.add_argument("--week", required=True, help="ISO date of the week's Monday")
    lab.add_argument("--csv", action="store_true")
    lab.add_argument("--svg", help="also write the picture (SVG) to this file")
    lab.set_defaults(needs=NEEDS, func=_guard(_labour))
