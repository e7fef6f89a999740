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

from fynlo_sync.cli import main
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


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
    *args: str,
    **env: str,
) -> tuple[int, str, str]:
    """``fynlo <args>`` in this process (the subprocess form is :func:`fynlo`)."""
    for name, value in {**settings.to_env(), **env}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fynlo_check_reports_a_planted_violation(
    live: Live,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = live.tenant()
    till = live.terminal(tenant, tmp_path, ManualClock(1_700_000_000_000), seed=3)
    till.command(ORDERS, "o1", "open", {"currency": "EUR"})
    line = {"line_id": "l1", "item": "tea", "qty": 2, "unit_price": 250}
    till.command(ORDERS, "o1", "add_line", line)
    till.sync()

    code, out, err = run_cli(
        monkeypatch, capsys, live.settings, "check", "--json", "--tenant", tenant
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True and report["violations"] == []
    assert (report["database"], report["tenants"], report["records"]) == (live.kind, 1, 1)
    assert report["invariants"] == ["orders:order-total"]

    plant(live.settings, tenant, ORDERS, "o1", total=999)
    # The command itself, in its own process, against the live database.
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
    code, out, _ = run_cli(monkeypatch, capsys, live.settings, "check", "--tenant", tenant)
    assert code == 1
    assert f"{tenant}: orders:order-total: order o1 total 999" in out
    if live.kind == "sqlite":
        # Every tenant when none is named (this module's database: its other tenants are
        # clean; the Postgres database is the whole session's, too big to scan here).
        code, out, _ = run_cli(monkeypatch, capsys, live.settings, "check", "--json")
        everyone = json.loads(out)
        assert code == 1 and everyone["tenants"] >= 1 and len(everyone["violations"]) == 1


def test_fynlo_check_stops_on_a_bad_plugin_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", env="dev")
    code, _, err = run_cli(
        monkeypatch, capsys, settings, "check", "--json", FYNLO_PLUGINS="nowhere:Plugin"
    )
    assert code == 2
    assert "fynlo check: FYNLO_PLUGINS: cannot load 'nowhere:Plugin'" in err


def test_fynlo_schema_export_json_is_the_domains_vector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(env="dev")
    done = fynlo(settings, "schema", "export", "--json")
    assert done.returncode == 0, done.stderr
    vector = json.loads((ROOT / "docs/protocol/vectors/domains.json").read_text())
    assert json.loads(done.stdout) == vector
    assert [c["name"] for c in vector["collections"]] == ["conflicts", "orders"]
    code, out, _ = run_cli(
        monkeypatch, capsys, settings, "schema", "export", "--json", FYNLO_PLUGINS=""
    )
    doc = json.loads(out)
    assert (
        code == 0
        and doc["plugins"] == []
        and [c["name"] for c in doc["collections"]] == ["conflicts"]
    )
    code, out, _ = run_cli(monkeypatch, capsys, settings, "schema", "export")
    assert code == 0
    assert "orders (orders): 10 fields, 8 commands, state table on 'status'" in out


def test_the_server_serves_the_domains_document(live: Live) -> None:
    link = live.device(live.tenant())
    got = raw(live, "GET", "/v1/schema/domains", link)
    assert got.status_code == 200, got.text
    assert got.json() == domains_document(make_registry())
    assert [c["name"] for c in got.json()["collections"]][:2] == ["conflicts", "notes"]
    anonymous = raw(live, "GET", "/v1/schema/domains")
    assert anonymous.status_code == 401
