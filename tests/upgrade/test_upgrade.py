"""The one migration runner: a database made by release 0.1.0 upgrades in place and keeps
its data; a newer database is refused; a failed migration leaves nothing behind.

``fixtures/v0.1.0-*.db`` were written by the code of 027470f (``make_fixture.py``)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import conflict
from fynlo_sync.cli import main
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import StoreError
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.migrations import Component, migrate_sqlite, sqlite_statements
from fynlo_sync.store.sqlite import STORE, TERMINAL, SqliteServerStore, SqliteTerminalStore
from fynlo_sync.store.sqlport import PgSql, SqliteSql
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.loopback import LoopbackTransport
from server.accounts import ACCOUNTS, Accounts

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "v0.1.0.json").read_text())
MADE_MS = 1_760_000_000_000  # the fixture's clock


def _copy(tmp_path: Path, kind: str) -> Path:
    target = tmp_path / f"{kind}.db"
    shutil.copyfile(FIXTURES / f"v0.1.0-{kind}.db", target)
    return target


def _layout(path: Path) -> dict[str, Any]:
    """Every table's columns and indexes' columns (not the SQL text, which differs in
    quoting between a renamed table and a created one)."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        out: dict[str, Any] = {}
        for table in tables:
            columns = [tuple(r[1:]) for r in conn.execute(f'PRAGMA table_info("{table}")')]
            indexes = sorted(
                (r[1], tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{r[1]}")')))
                for r in conn.execute(f'PRAGMA index_list("{table}")')
            )
            out[table] = (columns, indexes)
        migrations = sorted(conn.execute("SELECT component, version FROM fynlo_migrations"))
    return {"tables": out, "migrations": migrations}


def test_the_fixtures_are_of_the_old_layout() -> None:
    for kind in ("server", "terminal"):
        with sqlite3.connect(FIXTURES / f"v0.1.0-{kind}.db") as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "_migrations" in names
        assert ("records" if kind == "server" else "outbox") in names


def test_an_embedded_server_database_of_0_1_0_keeps_its_data(tmp_path: Path) -> None:
    path = _copy(tmp_path, "server")
    store = SqliteServerStore(path)
    tenant = EXPECTED["tenant"]
    assert store.cursor(tenant) == EXPECTED["server_cursor"]
    assert store.high_waters(tenant) == EXPECTED["server_high_waters"]
    totals = {r.record_id: r.fields["total"] for r in store.records(tenant, "orders")}
    assert totals == EXPECTED["server_totals"]
    assert [o.seq for o in store.op_log(tenant, "till")] == [1, 2]

    async def accounts() -> tuple[list[int], str, str]:
        db = SqliteSql(path)
        try:
            acc = Accounts(db, now_ms=ManualClock(MADE_MS + 60_000))
            applied = await acc.migrate()
            grant = await acc.refresh(EXPECTED["refresh_token"])
            bar = await acc.redeem(EXPECTED["spare_enrollment_code"])
            return applied, grant.node_id, bar.node_id
        finally:
            await db.close()

    assert anyio.run(accounts) == (list(range(2, len(ACCOUNTS.migrations) + 1)), "till", "bar")
    store.close()

    fresh = tmp_path / "fresh.db"
    SqliteServerStore(fresh).close()
    anyio.run(lambda: _migrate_accounts(fresh))
    upgraded = _layout(path)
    assert upgraded == _layout(fresh)
    assert upgraded["migrations"] == [*_all("accounts", ACCOUNTS), *_all("store", STORE)]
    assert all(name.startswith("fynlo_") for name in upgraded["tables"])


async def _migrate_accounts(path: Path) -> None:
    db = SqliteSql(path)
    await Accounts(db, now_ms=ManualClock()).migrate()
    await db.close()


def test_a_terminal_database_of_0_1_0_keeps_its_outbox_and_pushes_it(tmp_path: Path) -> None:
    server_path, terminal_path = _copy(tmp_path, "server"), _copy(tmp_path, "terminal")
    registry = conflict.registry([OrdersPlugin()])
    server = SqliteServerStore(server_path)
    terminal_store = SqliteTerminalStore(terminal_path, "till")
    assert [op.seq for op in terminal_store.outbox()] == EXPECTED["terminal_outbox_seqs"]
    assert {r.record_id: r.fields["total"] for r in terminal_store.records("orders")} == EXPECTED[
        "terminal_totals"
    ]
    till = Terminal(
        terminal_store,
        registry,
        LoopbackTransport(ServerReplica(server, registry), EXPECTED["tenant"], "till"),
        wall=ManualClock(MADE_MS + 60_000, tick_ms=7),
        rng=random.Random(2),
    )
    till.sync()
    assert terminal_store.outbox() == []
    totals = {r.record_id: r.fields["total"] for r in server.records(EXPECTED["tenant"], "orders")}
    assert totals == EXPECTED["terminal_totals"]
    terminal_store.close()
    server.close()
    fresh = tmp_path / "fresh-terminal.db"
    SqliteTerminalStore(fresh, "x").close()
    assert _layout(terminal_path) == _layout(fresh)


def test_fynlo_migrate_upgrades_the_file_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(tmp_path, "server")
    monkeypatch.setenv("FYNLO_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.delenv("FYNLO_SECRET_KEY", raising=False)
    monkeypatch.delenv("FYNLO_REDIS_URL", raising=False)
    assert main(["migrate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"database": "sqlite", "migrated": True}
    assert main(["device", "list", "--tenant", EXPECTED["tenant"], "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["devices"]
    assert [d["node_id"] for d in listed] == ["bar", "till"]
    assert _layout(path)["migrations"] == [*_all("accounts", ACCOUNTS), *_all("store", STORE)]


def _all(name: str, component: Component) -> list[tuple[str, int]]:
    """Every version of ``component``: an upgraded file has them all."""
    return [(name, v) for v in range(1, len(component.migrations) + 1)]


def test_a_file_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = _copy(tmp_path, "terminal")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _migrations(version) VALUES (7)")
    known = len(TERMINAL.migrations)
    with pytest.raises(
        StoreError, match=f"'terminal' migration 7, but this fynlo-sync knows {known}"
    ):
        SqliteTerminalStore(path, "till")
    with sqlite3.connect(path) as conn:  # the adoption rolled back
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"_migrations", "outbox", "meta"} <= names
    assert not any(name.startswith("fynlo_") for name in names)

    fresh = tmp_path / "new.db"
    SqliteServerStore(fresh).close()
    with sqlite3.connect(fresh) as conn:
        conn.execute(
            "INSERT INTO fynlo_migrations VALUES ('store', ?)", (len(STORE.migrations) + 1,)
        )
    with pytest.raises(StoreError, match="newer release"):
        SqliteServerStore(fresh)


def test_a_failed_migration_leaves_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    broken = Component("probe", ("CREATE TABLE fynlo_a (x INTEGER); CREATE TABLE fynlo_a (y)",))
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate_sqlite(conn, broken)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "fynlo_a" not in names
    assert list(conn.execute("SELECT * FROM fynlo_migrations")) == []
    fixed = Component("probe", ("CREATE TABLE fynlo_a (x INTEGER)", "CREATE TABLE fynlo_b (y)"))
    assert migrate_sqlite(conn, fixed) == [1, 2]
    assert migrate_sqlite(conn, fixed) == []
    conn.close()


def test_statements_are_cut_where_sqlite_ends_them() -> None:
    script = """
        CREATE TABLE fynlo_t (note TEXT DEFAULT 'a;b');
        CREATE TRIGGER fynlo_tr AFTER INSERT ON fynlo_t BEGIN
            UPDATE fynlo_t SET note = 'x;y'; SELECT 1;
        END;
        ;
    """
    got = sqlite_statements(script)
    assert len(got) == 2 and got[1].startswith("CREATE TRIGGER") and got[1].endswith("END;")
    with pytest.raises(StoreError, match="incomplete"):
        sqlite_statements("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;")
    assert {TERMINAL.name, STORE.name} == {"terminal", "store"}


@pytest.mark.postgres
def test_postgres_refuses_a_newer_database_and_rolls_back_a_failed_script(
    postgres_url: str,
) -> None:
    import asyncpg

    async def run() -> tuple[list[int], bool]:
        pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
        try:
            port = PgSql(pool)
            broken = Component("probe2", ("CREATE TABLE fynlo_p2 (x int); SELECT 1/0",))
            with pytest.raises(StoreError) as failed:
                await port.migrate(broken)
            assert isinstance(failed.value.__cause__, asyncpg.DivisionByZeroError)
            left = await pool.fetchval("SELECT to_regclass('fynlo_p2') IS NOT NULL")
            applied = await port.migrate(Component("probe2", ("CREATE TABLE fynlo_p2 (x int)",)))
            await pool.execute(
                "INSERT INTO fynlo_migrations (component, version) VALUES ('probe2', 5)"
            )
            with pytest.raises(StoreError, match="'probe2' migration 5"):
                await port.migrate(Component("probe2", ("CREATE TABLE fynlo_p2 (x int)",)))
            await pool.execute("DROP TABLE fynlo_p2")
            await pool.execute("DELETE FROM fynlo_migrations WHERE component = 'probe2'")
            return applied, bool(left)
        finally:
            await pool.close()

    assert asyncio.run(run()) == ([1], False)
