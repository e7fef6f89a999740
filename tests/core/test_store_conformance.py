"""The store conformance suite (fynlo_sync.testing) against memory and SQLite stores.

The Postgres store runs the same checks in tests/server/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fynlo_sync.store import (
    MemoryServerStore,
    MemoryTerminalStore,
    ServerStore,
    SqliteServerStore,
    SqliteTerminalStore,
    TerminalStore,
)
from fynlo_sync.store.sqlite import SERVER_MIGRATIONS
from fynlo_sync.testing import SERVER_STORE_CHECKS, TERMINAL_STORE_CHECKS

SERVER_FACTORIES: dict[str, Callable[[Path], ServerStore]] = {
    "memory": lambda _: MemoryServerStore(),
    "sqlite": lambda tmp: SqliteServerStore(tmp / "server.db"),
}
TERMINAL_FACTORIES: dict[str, Callable[[Path], TerminalStore]] = {
    "memory": lambda _: MemoryTerminalStore("n1"),
    "sqlite": lambda tmp: SqliteTerminalStore(tmp / "terminal.db", "n1"),
}


@pytest.mark.parametrize("kind", sorted(SERVER_FACTORIES))
@pytest.mark.parametrize("check", SERVER_STORE_CHECKS, ids=lambda c: c.__name__)
def test_server_store(check: Callable[[ServerStore], None], kind: str, tmp_path: Path) -> None:
    store = SERVER_FACTORIES[kind](tmp_path)
    try:
        check(store)
    finally:
        store.close()


@pytest.mark.parametrize("kind", sorted(TERMINAL_FACTORIES))
@pytest.mark.parametrize("check", TERMINAL_STORE_CHECKS, ids=lambda c: c.__name__)
def test_terminal_store(check: Callable[[TerminalStore], None], kind: str, tmp_path: Path) -> None:
    store = TERMINAL_FACTORIES[kind](tmp_path)
    try:
        check(store)
    finally:
        store.close()


def test_sqlite_terminal_file_belongs_to_one_node(tmp_path: Path) -> None:
    SqliteTerminalStore(tmp_path / "t.db", "n1").close()
    from fynlo_sync.errors import StoreError

    with pytest.raises(StoreError, match="belongs to node 'n1'"):
        SqliteTerminalStore(tmp_path / "t.db", "n2")


def test_sqlite_migrations_run_once(tmp_path: Path) -> None:
    store = SqliteServerStore(tmp_path / "s.db")
    store.close()
    again = SqliteServerStore(tmp_path / "s.db")
    versions = list(again.db.conn.execute("SELECT component, version FROM fynlo_migrations"))
    assert versions == [("store", v) for v in range(1, len(SERVER_MIGRATIONS) + 1)]
    again.close()
