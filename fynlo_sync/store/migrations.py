"""The one migration runner of every database fynlo-sync writes: the terminal's SQLite file,
the embedded server's SQLite file, PostgreSQL.

* A **component** (:class:`Component`) is a named, append-only tuple of SQL scripts; script
  ``i`` (from 0) is version ``i + 1``. Today: ``terminal`` (:mod:`fynlo_sync.store.sqlite`),
  ``store`` (the server's sync tables: SQLite in :mod:`fynlo_sync.store.sqlite`, PostgreSQL
  in :mod:`fynlo_sync.store.postgres`, one name, a script per dialect) and ``accounts``
  (:mod:`server.accounts`, portable SQL for both).
* **One table** records what was applied, in every database: ``fynlo_migrations(component,
  version)``. Every table is named ``fynlo_*``.
* Each script runs in one transaction with the row that records it: a failed migration
  leaves nothing behind. On PostgreSQL the transaction first takes an advisory lock, so
  several processes starting at once apply each script once.
* A database that records a version this code does not know (a newer release wrote it)
  is refused with a :class:`~fynlo_sync.errors.StoreError`, before anything runs.
* :class:`Legacy` adopts a SQLite file of release 0.1.0 (its versions in ``_migrations``,
  tables without the prefix): in one transaction, the tables are renamed, the versions are
  moved into ``fynlo_migrations`` and ``_migrations`` is dropped. The data stay.

:func:`migrate_sqlite` runs a component on a synchronous ``sqlite3`` connection (the stores
a terminal opens, with the standard library only); ``SqlPort.migrate`` (in
:mod:`fynlo_sync.store.sqlport`) runs it through the async SQL port, on SQLite or
PostgreSQL. Both take their plan from :func:`pending`.

Adding a migration: append a script to the component's tuple (never edit or reorder a
released one); for the server's ``store`` write it for both dialects, and for a new table
name it ``fynlo_<something>``. A plugin with tables of its own uses its own component name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from fynlo_sync.errors import StoreError

__all__ = [
    "MIGRATIONS_TABLE",
    "Component",
    "Legacy",
    "migrate_sqlite",
    "pending",
    "sqlite_statements",
]

MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS fynlo_migrations ("
    "component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))"
)
APPLIED = "SELECT version FROM fynlo_migrations WHERE component = $1"
RECORD = "INSERT INTO fynlo_migrations (component, version) VALUES ($1, $2)"

#: The advisory lock every PostgreSQL migration transaction takes ("fynlomig" in ASCII).
PG_LOCK = 0x66796E6C6F6D6967


@dataclass(frozen=True, slots=True)
class Legacy:
    """How release 0.1.0 laid this component out in a SQLite file: versions in a
    ``_migrations(version)`` table, and these tables (``old``, ``new``) unprefixed. ``after``
    is SQL run once the tables are renamed (indexes named anew)."""

    renames: tuple[tuple[str, str], ...]
    after: str = ""


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    migrations: tuple[str, ...]
    legacy: Legacy | None = None


def pending(component: Component, applied: Iterable[int]) -> list[tuple[int, str]]:
    """The (version, script) pairs still to run, in order. Refuses a database that holds a
    version this code does not know."""
    done = set(applied)
    known = len(component.migrations)
    unknown = sorted(v for v in done if not 1 <= v <= known)
    if unknown:
        raise StoreError(
            f"the database holds {component.name!r} migration {unknown[-1]}, but this "
            f"fynlo-sync knows {known}: it was written by a newer release; upgrade fynlo-sync",
            component=component.name,
            version=unknown[-1],
            known=known,
        )
    return [
        (version, script)
        for version, script in enumerate(component.migrations, start=1)
        if version not in done
    ]


def sqlite_statements(script: str) -> list[str]:
    """A script cut into SQLite statements (at a ``;`` that ends a complete statement, so a
    ``;`` in a string or a trigger body stays)."""
    out: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                out.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:80]!r}")
    return out


def _positional(sql: str) -> str:
    return sql.replace("$1", "?1").replace("$2", "?2")


def _adopt_legacy(conn: sqlite3.Connection, component: Component) -> None:
    legacy = component.legacy
    if legacy is None:
        return
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if found is None:
        return
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(MIGRATIONS_TABLE)
        for old, new in legacy.renames:
            if old in tables:
                conn.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')
        for statement in sqlite_statements(legacy.after):
            conn.execute(statement)
        versions = [int(row[0]) for row in conn.execute("SELECT version FROM _migrations")]
        pending(component, versions)  # a legacy file from the future is refused too
        conn.executemany(
            _positional(RECORD) + " ON CONFLICT DO NOTHING",
            [(component.name, v) for v in sorted(versions)],
        )
        conn.execute("DROP TABLE _migrations")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate_sqlite(conn: sqlite3.Connection, component: Component) -> list[int]:
    """Apply ``component``'s pending migrations on a SQLite connection in autocommit mode
    (``isolation_level=None``), each in one ``BEGIN IMMEDIATE`` transaction. Returns the
    versions applied now."""
    _adopt_legacy(conn, component)
    conn.execute(MIGRATIONS_TABLE)
    applied: list[int] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = [int(r[0]) for r in conn.execute(_positional(APPLIED), (component.name,))]
            todo = pending(component, done)
            if not todo:
                conn.execute("COMMIT")
                return applied
            version, script = todo[0]
            for statement in sqlite_statements(script):
                conn.execute(statement)
            conn.execute(_positional(RECORD), (component.name, version))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(version)
