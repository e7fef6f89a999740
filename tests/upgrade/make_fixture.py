"""Makes ``fixtures/v0.1.0-server.db`` and ``fixtures/v0.1.0-terminal.db``: the embedded
server database and a terminal's database as release 0.1.0 (commit 027470f, before the
single migration runner) wrote them, and ``fixtures/v0.1.0.json``, what they hold.

It was run once, on that code, and its output committed: ``python -m
tests.upgrade.make_fixture`` on a checkout of 027470f. On today's code it makes files of
today's layout, which the upgrade test does not use. Deterministic: fixed clock, seeded
randomness (only the argon2 salt and the token secrets vary, and the JSON records them).
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import anyio

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.sqlite import SqliteServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.loopback import LoopbackTransport
from server.accounts import Accounts
from server.sqlport import SqliteSql

HERE = Path(__file__).parent / "fixtures"


async def _accounts(path: Path, clock: ManualClock) -> dict[str, str]:
    db = SqliteSql(path)
    accounts = Accounts(db, now_ms=clock)
    await accounts.migrate()
    tenant = await accounts.create_tenant("Cafe Upgrade", "t_upgrade")
    enrolled = await accounts.enroll(tenant, "till")
    grant = await accounts.redeem(enrolled.enrollment_code)
    spare = await accounts.enroll(tenant, "bar")
    await db.close()
    return {
        "tenant": tenant,
        "refresh_token": grant.refresh_token,
        "spare_enrollment_code": spare.enrollment_code,
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    server_path, terminal_path = HERE / "v0.1.0-server.db", HERE / "v0.1.0-terminal.db"
    for path in (server_path, terminal_path):
        path.unlink(missing_ok=True)
    clock = ManualClock(1_760_000_000_000, tick_ms=7)
    registry = conflict.registry([OrdersPlugin()])
    store = SqliteServerStore(server_path)
    secrets = anyio.run(_accounts, server_path, clock)
    replica = ServerReplica(store, registry)
    tenant = secrets["tenant"]
    till = Terminal(
        SqliteTerminalStore(terminal_path, "till"),
        registry,
        LoopbackTransport(replica, tenant, "till"),
        wall=clock,
        rng=random.Random(1),
    )
    till.command("orders", "o-1", "open", {"currency": "GBP", "table": "4"})
    till.command(
        "orders",
        "o-1",
        "add_line",
        {"line_id": "l1", "item": "burger", "qty": 2, "unit_price": 1250},
    )
    till.sync()
    till.command("orders", "o-2", "open", {"currency": "GBP", "table": "9"})
    till.command(
        "orders", "o-2", "add_line", {"line_id": "l1", "item": "tea", "qty": 1, "unit_price": 300}
    )
    # o-2 stays in the outbox: the upgrade must keep it and push it afterwards.
    expected = {
        **secrets,
        "server_cursor": store.cursor(tenant),
        "server_high_waters": store.high_waters(tenant),
        "server_totals": {r.record_id: r.fields["total"] for r in store.records(tenant, "orders")},
        "terminal_outbox_seqs": [op.seq for op in till.store.outbox()],
        "terminal_totals": {r.record_id: r.fields["total"] for r in till.store.records("orders")},
    }
    till.store.close()
    store.close()
    for path in (server_path, terminal_path):
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("VACUUM")
    (HERE / "v0.1.0.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
