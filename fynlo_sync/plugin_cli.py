"""``fynlo schema export`` and ``fynlo check``: the plugins' domains from the command line.

Both load the plugins ``FYNLO_PLUGINS`` names, with their settings (a bad one exits 2 with
the variable named). ``schema export --json`` prints the domains document
(``docs/protocol.md`` section 21); ``check`` runs every plugin's invariants against the
database ``FYNLO_DATABASE_URL`` names and exits 1 if any is violated.

Only the standard library at the top: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["register"]


def _registry() -> Any:
    import conflict
    from fynlo_sync.plugin_loader import load_plugins, plugin_specs

    return conflict.registry(load_plugins(plugin_specs(os.environ), os.environ))


def _guarded(name: str, fn: Callable[[argparse.Namespace], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        from fynlo_sync.errors import FynloError

        try:
            return fn(args)
        except FynloError as exc:
            print(f"fynlo {name}: {exc.detail}", file=sys.stderr)
            return 2

    return run


def _export(args: argparse.Namespace) -> int:
    from fynlo_sync.schema import domains_document

    doc = domains_document(_registry())
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    for c in doc["collections"]:
        table = c["state_table"]
        machine = (
            f", state table on {table['field']!r}: {len(table['states'])} states, "
            f"{len(table['transitions'])} transitions"
            if table
            else ""
        )
        print(
            f"{c['name']} ({c['plugin'] or 'system'}): {len(c['fields'])} fields, "
            f"{len(c['commands'])} commands{machine}"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from fynlo_sync.cli import require
    from server.checks import check_database
    from server.settings import Settings

    env = dict(os.environ)
    if not env.get("FYNLO_SECRET_KEY"):
        env["FYNLO_ENV"] = "dev"  # the check signs nothing
    settings = Settings.from_env(env)
    if settings.kind == "postgres":
        require("postgres")

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total or done % 100 == 0:
            print(f"\rchecked {done}/{total} tenants", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)

    report = check_database(settings, _registry(), args.tenant or (), progress)
    if args.json:
        print(json.dumps(report.to_json(), sort_keys=True))
    else:
        for found in report.violations:
            v = found.violation
            print(f"{found.tenant}: {v.plugin}:{v.invariant}: {v.message}")
        print(
            f"{report.tenants} tenants, {report.records} records, "
            f"{len(report.invariants)} invariants: "
            + ("ok" if report.ok else f"{len(report.violations)} violations")
        )
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    schema = subparsers.add_parser("schema", help="the plugins' domains as data")
    schema_sub = schema.add_subparsers(dest="action", required=True)
    export = schema_sub.add_parser(
        "export", help="collections, fields, strategies, state tables (docs/protocol.md 21)"
    )
    export.add_argument("--json", action="store_true", help="print the JSON document")
    export.set_defaults(func=_guarded("schema export", _export))

    check = subparsers.add_parser(
        "check", help="run every plugin's invariants against the database; exit 1 on a violation"
    )
    check.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(needs=("server",), func=_guarded("check", _check))
