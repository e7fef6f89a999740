"""``fynlo check``: every plugin's invariants against a live database, on embedded SQLite
and on PostgreSQL. A planted record that breaks one is reported, with a nonzero exit."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from fynlo_sync.domains.orders import ORDERS
from fynlo_sync.schema import domains_document
from fynlo_sync.testing import ManualClock
from server.settings import Settings
from tests.core.conftest import make_registry
from tests.server.conftest import Live, raw

ROOT = Path(__file__).resolve().parents[2]


def fynlo(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fynlo_sync.cli", *args],
        cwd=ROOT,
        env={**os.environ, **settings.to_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def plant(settings: Settings, tenant: str, collection: str, record_id: str, **fields: Any) -> None:
    """Overwrite fields of a stored record behind the engine's back (a bug, or a bad
    migration, would do this)."""

    def edit(body: bytes) -> bytes:
        record = json.loads(body)
        record["fields"].update(fields)
        return json.dumps(record).encode()

    if settings.kind == "sqlite":
        with sqlite3.connect(settings.sqlite_path) as db:
            where = "tenant = ? AND collection = ? AND record_id = ?"
            key = (tenant, collection, record_id)
            (body,) = db.execute(f"SELECT body FROM fynlo_records WHERE {where}", key).fetchone()
            db.execute(f"UPDATE fynlo_records SET body = ? WHERE {where}", (edit(body), *key))
        return

    async def on_postgres() -> None:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url)
        try:
            where = "tenant = $1 AND collection = $2 AND record_id = $3"
            body = await conn.fetchval(
                f"SELECT body FROM fynlo_records WHERE {where}", tenant, collection, record_id
            )
            await conn.execute(
                f"UPDATE fynlo_records SET body = $4 WHERE {where}",
                tenant,
                collection,
                record_id,
                edit(body),
            )
        finally:
            await conn.close()

    anyio.run(on_postgres)


def test_fynlo_check_reports_a_planted_violation(live: Live, tmp_path: Path) -> None:
    tenant = live.tenant()
    till = live.terminal(tenant, tmp_path, ManualClock(1_700_000_000_000), seed=3)
    till.command(ORDERS, "o1", "open", {"currency": "EUR"})
    line = {"line_id": "l1", "item": "tea", "qty": 2, "unit_price": 250}
    till.command(ORDERS, "o1", "add_line", line)
    till.sync()

    clean = fynlo(live.settings, "check", "--json", "--tenant", tenant)
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] is True and report["violations"] == []
    assert (report["database"], report["tenants"], report["records"]) == (live.kind, 1, 1)
    assert report["invariants"] == ["orders:order-total"]

    plant(live.settings, tenant, ORDERS, "o1", total=999)
    broken = fynlo(live.settings, "check", "--json", "--tenant", tenant)
    assert broken.returncode == 1, broken.stderr
    assert json.loads(broken.stdout)["violations"] == [
        {
            "tenant": tenant,
            "plugin": "orders",
            "invariant": "order-total",
            "message": "order o1 total 999 but its lines sum to 500",
        }
    ]
    # Every tenant when none is named (other tests' tenants are clean).
    everyone = json.loads(fynlo(live.settings, "check", "--json").stdout)
    assert everyone["tenants"] >= 1 and len(everyone["violations"]) == 1
    text = fynlo(live.settings, "check", "--tenant", tenant)
    assert text.returncode == 1
    assert f"{tenant}: orders:order-total: order o1 total 999" in text.stdout


def test_fynlo_check_stops_on_a_bad_plugin_list(live: Live) -> None:
    done = fynlo(live.settings, "check", "--json", FYNLO_PLUGINS="nowhere:Plugin")
    assert done.returncode == 2
    assert "fynlo check: FYNLO_PLUGINS: cannot load 'nowhere:Plugin'" in done.stderr


@pytest.mark.parametrize("plugins", ["", "fynlo_sync.domains.orders:OrdersPlugin"])
def test_fynlo_schema_export_json_is_the_domains_vector(plugins: str) -> None:
    settings = Settings(env="dev")
    done = fynlo(settings, "schema", "export", "--json", FYNLO_PLUGINS=plugins)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    names = [c["name"] for c in doc["collections"]]
    if plugins:
        vector = json.loads((ROOT / "docs/protocol/vectors/domains.json").read_text())
        assert doc == vector
        assert names == ["conflicts", "orders"]
    else:
        assert names == ["conflicts"] and doc["plugins"] == []


def test_the_server_serves_the_domains_document(live: Live) -> None:
    link = live.device(live.tenant())
    got = raw(live, "GET", "/v1/schema/domains", link)
    assert got.status_code == 200, got.text
    assert got.json() == domains_document(make_registry())
    assert [c["name"] for c in got.json()["collections"]][:2] == ["conflicts", "notes"]
    anonymous = raw(live, "GET", "/v1/schema/domains")
    assert anonymous.status_code == 401
