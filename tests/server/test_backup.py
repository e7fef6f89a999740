"""``fynlo backup``: an online copy of the embedded database taken while a real server keeps
accepting pushes is a consistent, self-contained database; PostgreSQL is pointed to
pg_dump; an existing target is not overwritten by accident."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from fynlo_sync.cli import main
from fynlo_sync.store.sqlite import SqliteServerStore
from server import admin
from server.testing import LocalServer
from tests.core.conftest import make_registry
from tests.server.conftest import batch_of


def test_a_backup_taken_while_pushes_run_is_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalServer.start(tmp_path / "srv", registry=make_registry()) as srv:
        tenant = srv.create_tenant("cafe")
        link = srv.connect(tenant)
        link.push(batch_of(link.node_id, 1, 200, title="x" * 60))
        stop = threading.Event()
        pushed = [200]

        def keep_pushing() -> None:
            while not stop.is_set():
                first = pushed[0] + 1
                link.push(batch_of(link.node_id, first, 20))
                pushed[0] += 20

        writer = threading.Thread(target=keep_pushing, daemon=True)
        writer.start()
        target = tmp_path / "backup.db"
        monkeypatch.setenv("FYNLO_DATABASE_URL", srv.settings.database_url)
        try:
            assert main(["backup", str(target), "--json"]) == 0
        finally:
            stop.set()
            writer.join(30)
        link.close()
        assert admin.list_devices(srv.settings, tenant)
    done = json.loads(capsys.readouterr().out)
    assert done["target"] == str(target) and done["pages"] > 10
    assert not Path(str(target) + "-wal").exists()
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    copy = SqliteServerStore(target)
    cursor = copy.cursor(tenant)
    assert 200 <= cursor <= pushed[0]
    high = copy.high_water(tenant, link.node_id)
    assert high == cursor  # one node: every op made one change, snapshot taken whole
    assert [c.seq for c in copy.changes(tenant, 0, 100_000)] == list(range(1, cursor + 1))
    copy.close()
    assert main(["backup", str(target)]) == 2  # exists
    assert "exists" in capsys.readouterr().err


def test_postgres_is_pointed_to_pg_dump(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FYNLO_DATABASE_URL", "postgresql://u@h/db")
    assert main(["backup", str(tmp_path / "x.db")]) == 2
    assert "pg_dump" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "y.db"), "--from", str(tmp_path / "none.db")]) == 2
