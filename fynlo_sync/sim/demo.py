"""``fynlo demo``: a restaurant service across terminals that lose the internet and still
converge, on the real server over HTTP and WebSockets, shown live, then reported.

Without ``--server-url`` it starts the server in-process on a free loopback port over
embedded SQLite in a temporary folder. With ``--server-url`` it uses a running server and
enrolls its terminals through that server's database (the same ``FYNLO_DATABASE_URL`` the
server uses, as ``fynlo device enroll`` does); the workload then sticks to the orders plugin.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import MissingDependencyError
from fynlo_sync.ops import Outcome
from fynlo_sync.plugins import Registry
from fynlo_sync.sim.world import restaurant_registry

__all__ = ["main", "run_demo"]

DEFAULT_TURNS = 24


@dataclass(frozen=True, slots=True)
class _Server:
    url: str
    description: str
    registry: Registry
    floor: bool
    enroll: Callable[[str], str]
    log: Callable[[], dict[str, list[Outcome]]] | None


@contextlib.contextmanager
def _server(scratch: Path, server_url: str | None, tenant_name: str) -> Iterator[_Server]:
    try:
        from server import admin
        from server.settings import Settings
        from server.testing import LocalServer
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(exc.name or "server", "server") from exc
    if server_url is not None:
        # Enrolling signs nothing, so (as with `fynlo device enroll`) no key is needed.
        environ = dict(os.environ)
        if not environ.get("FYNLO_SECRET_KEY"):
            environ["FYNLO_ENV"] = "dev"
        settings = Settings.from_env(environ)
        tenant = admin.create_tenant(settings, tenant_name)
        yield _Server(
            url=server_url.rstrip("/"),
            description=f"{server_url} (running; tenant {tenant})",
            registry=conflict.registry([OrdersPlugin()]),
            floor=False,
            enroll=lambda name: admin.enroll_device(settings, tenant, None).enrollment_code,
            log=None,
        )
        return
    registry = restaurant_registry()
    with LocalServer.start(scratch, registry=registry) as local:
        tenant = local.create_tenant(tenant_name)

        def log() -> dict[str, list[Outcome]]:
            from fynlo_sync.store.sqlite import SqliteServerStore

            store = SqliteServerStore(local.settings.sqlite_path)
            try:
                return {n: store.op_log(tenant, n) for n in store.high_waters(tenant)}
            finally:
                store.close()

        yield _Server(
            url=local.url,
            description=f"in-process at {local.url}, embedded SQLite in a temporary folder",
            registry=registry,
            floor=True,
            enroll=lambda name: local.enroll(tenant, name).enrollment_code,
            log=log,
        )


def run_demo(
    *,
    terminals: int = 6,
    seed: int = 7,
    turns: int = DEFAULT_TURNS,
    out: Path | None = None,
    server_url: str | None = None,
    pace: float = 0.0,
    on_update: Callable[[Any], None] | None = None,
) -> Any:
    """Run the service and write the report; returns the :class:`Report`."""
    from fynlo_sync.sim.report import build
    from fynlo_sync.sim.service import Service

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="fynlo-demo-"))
    with (
        tempfile.TemporaryDirectory(prefix="fynlo-demo-db-") as scratch,
        _server(Path(scratch), server_url, f"Demo Bistro (seed {seed})") as server,
    ):
        terminal_dir = Path(scratch) / "terminals"
        terminal_dir.mkdir()
        service = Service(
            url=server.url,
            enroll=server.enroll,
            registry=server.registry,
            folder=terminal_dir,
            terminals=terminals,
            seed=seed,
            turns=turns,
            pace=pace,
            floor=server.floor,
            server_log=server.log,
            on_update=on_update,
        )
        try:
            audit = service.run()
        finally:
            service.close()
        report = build(service, audit, server=server.description)
        report.write(folder, service)
    return report


def _live_table(service: Any) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cursor = 0
    table = Table(title=f"fynlo demo  ·  seed {service.seed}  ·  {service.phase}", expand=False)
    for column in ("terminal", "network", "ops", "pending", "syncs", "failed", "last ms", "pokes"):
        table.add_column(column, justify="left" if column in ("terminal", "network") else "right")
    for desk in service.desks:
        meta = desk.client.store.meta()
        cursor = max(cursor, meta.cursor)
        ok = [s for s in desk.syncs if s.ok]
        network = Text("● online", "green") if desk.online else Text("✕ cut off", "bold red")
        table.add_row(
            desk.name,
            network,
            str(len(desk.made)),
            str(meta.next_seq - 1 - meta.acked_seq),
            str(len(ok)),
            str(len(desk.syncs) - len(ok)),
            f"{ok[-1].ms:.0f}" if ok else "",
            str(desk.pokes),
        )
    events = [Text(f"{e.at:5.1f}s  {e.text}", "dim") for e in service.events[-6:]]
    header = Text(f"{service.now():.1f} s · server feed at {cursor}", "bold")
    return Group(header, table, *events)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="What happened", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.rows():
        style = ""
        if key in ("lost", "duplicated"):
            style = "green" if value == "0" else "bold red"
        if key == "converged":
            style = "bold green" if value == "yes" else "bold red"
        table.add_row(key, f"[{style}]{value}[/]" if style else value)
    console.print(table)
    sync = Table(title="Sync time per terminal")
    for column in ("terminal", "ops", "syncs", "failed", "median ms", "max ms", "offline s"):
        sync.add_column(column, justify="left" if column == "terminal" else "right")
    sync.add_column("catch-up ms", justify="right")
    for t in report.terminals:
        sync.add_row(
            t.name,
            str(t.ops_made),
            str(t.syncs_ok),
            str(t.syncs_failed),
            f"{t.sync_ms_median:.1f}",
            f"{t.sync_ms_max:.1f}",
            f"{t.offline_s:.1f}",
            "" if t.catch_up_ms is None else f"{t.catch_up_ms:.0f}",
        )
    console.print(sync)
    console.print(f"report: {report.files['html']}  (also {report.files['markdown']})")
    console.print(f"timeline picture: {report.files['picture']}")


def main(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.terminals < 2:
        print("fynlo demo: --terminals must be at least 2", file=sys.stderr)
        return 2
    turns = args.ops or DEFAULT_TURNS
    interactive = not args.json and sys.stdout.isatty()
    pace = args.pace if args.pace is not None else (0.12 if interactive else 0.0)
    options: dict[str, Any] = {
        "terminals": args.terminals,
        "seed": args.seed,
        "turns": turns,
        "out": args.out,
        "server_url": args.server_url,
        "pace": pace,
    }
    try:
        if args.json:
            report = run_demo(**options)
            payments = _payments(report, args.payments)
            doc = report.to_json()
            doc["labour"] = _labour(report, args.seed)
            if payments is not None:
                doc["payments"] = payments
            print(json.dumps(doc, indent=2))
        else:
            try:
                from rich.live import Live
            except ModuleNotFoundError as exc:
                raise MissingDependencyError("rich", "server") from exc

            started = time.perf_counter()
            with Live(refresh_per_second=8, transient=False) as live:

                def show(service: Any) -> None:
                    live.update(_live_table(service))

                report = run_demo(**options, on_update=show)
            print()
            _print_report(report)
            payments = _payments(report, args.payments)
            if payments is not None:
                _print_payments(payments)
            _print_labour(_labour(report, args.seed))
            print(f"({time.perf_counter() - started:.1f} s)")
    except MissingDependencyError as exc:
        print(f"fynlo demo: {exc.detail}", file=sys.stderr)
        return 2
    if payments is not None and not payments["reconciled"]:
        return 1
    return 0 if report.audit.converged else 1


def _labour(report: Any, seed: int) -> dict[str, Any]:
    """The staff week (clock-ins, breaks, an outage, a shift ending on another terminal, a
    manager's approvals) and its labour report, written beside the report."""
    from fynlo_sync.sim.staff import labour_week

    return labour_week(seed, Path(report.files["html"]).parent)


def _print_labour(labour: dict[str, Any]) -> None:
    hour = 3_600_000
    print(
        f"labour, week of {labour['week']} ({labour['punches']} punches, "
        f"{len(labour['violations'])} invariant violations):"
    )
    for row in labour["employees"]:
        print(
            f"  {row['name']:<6} worked {row['worked_ms'] / hour:6.2f} h  regular "
            f"{row['regular_ms'] / hour:6.2f}  overtime {row['overtime_ms'] / hour:5.2f}  "
            f"double {row['double_ms'] / hour:5.2f}  pending {row['pending_ms'] / hour:5.2f}  "
            f"cost {row['cost']} {row['currency']}"
        )
    print(f"  picture: {labour['picture']}")


def _payments(report: Any, orders: int) -> dict[str, Any] | None:
    """Card and bank payments for real (``--payments N``), written beside the report."""
    if orders <= 0:
        return None
    from fynlo_sync.sandbox.payments_demo import run_payments

    folder = Path(report.files["html"]).parent
    result = run_payments(orders=orders)
    (folder / "payments.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _print_payments(payments: dict[str, Any]) -> None:
    print("payments (paid for real, then reconciled with each provider's own record):")
    for row in payments["payments"]:
        mark = "ok" if row["reconciled"] else "MISMATCH"
        print(
            f"  {row['order']:<12} {row['method']:<13} due {row['due']:>6} tip {row['tip']:>5}"
            f"  recorded {row['recorded']:>6}  provider took {row['provider_took']:>6}"
            f"  ({row['provider_payments']} payment)  {mark}"
        )
    for method, figures in sorted(payments["by_method"].items()):
        print(f"  {method}: {figures['payments']} payments, {figures['taken']} taken")
    print(
        f"  double charges {payments['double_charges']}, lost captures "
        f"{payments['lost_captures']}, reconciled: {payments['reconciled']}"
    )
