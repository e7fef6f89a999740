"""The async SQL port, with an asyncpg adapter (:class:`PgSql`) and a SQLite one
(:class:`SqliteSql`): the account logic is written once over it, and every migration of the
server's databases runs through its :meth:`SqlPort.migrate` (the one runner,
:mod:`fynlo_sync.store.migrations`).

SQL is written with PostgreSQL's ``$1`` placeholders; the SQLite adapter rewrites them to
SQLite's numbered ``?1``. Only portable SQL goes through here (plain types, ``ON CONFLICT
DO NOTHING``). The SQLite adapter owns one connection, runs every call on one worker thread,
and holds an asyncio lock for the length of a transaction, so statements of two tasks never
interleave on the connection.
"""

from __future__ import annotations

import contextvars
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from fynlo_sync.store.driver import driver_errors, translating
from fynlo_sync.store.migrations import (
    APPLIED,
    MIGRATIONS_TABLE,
    PG_LOCK,
    RECORD,
    Component,
    migrate_sqlite,
    pending,
)
from fynlo_sync.store.sqlite import connect

__all__ = ["PgSql", "SqlConn", "SqlPort", "SqliteSql"]

Row = Sequence[Any]


class SqlConn(Protocol):
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return how many rows it changed."""
        ...


class SqlPort(SqlConn, Protocol):
    def transaction(self) -> AbstractAsyncContextManager[SqlConn]: ...

    async def migrate(self, component: Component) -> list[int]:
        """Apply the component's pending migrations; return the versions applied now."""
        ...

    async def close(self) -> None: ...


@translating
class _PgConn:
    def __init__(self, db: Any) -> None:
        self._db = db

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._db.fetchrow(sql, *args)
        return None if row is None else tuple(row)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(row) for row in await self._db.fetch(sql, *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._db.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


@translating
class PgSql(_PgConn):
    """Over an asyncpg pool (owned by the caller)."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlConn]:
        with driver_errors():
            async with self.pool.acquire() as conn, conn.transaction():
                yield _PgConn(conn)

    async def migrate(self, component: Component) -> list[int]:
        """Each script in one transaction that first takes the migration advisory lock, so
        processes starting together apply each once (the loser sees it recorded)."""
        applied: list[int] = []
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_LOCK)
                await conn.execute(MIGRATIONS_TABLE)
                done = [row[0] for row in await conn.fetch(APPLIED, component.name)]
                todo = pending(component, done)
                if not todo:
                    return applied
                version, script = todo[0]
                await conn.execute(script)
                await conn.execute(RECORD, component.name, version)
            applied.append(version)

    async def close(self) -> None:
        pass


_PLACEHOLDER = re.compile(r"\$(\d+)")


@translating
class SqliteSql:
    """Over its own connection to a SQLite file (WAL; other connections may share it)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 5000) -> None:
        self._db = connect(path, busy_timeout_ms=busy_timeout_ms)
        self._conn: sqlite3.Connection = self._db.conn
        self._lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._in_tx: contextvars.ContextVar[bool] = contextvars.ContextVar("in_tx", default=False)

    def _run(self, sql: str, args: Sequence[Any]) -> tuple[list[Row], int]:
        cur = self._conn.execute(_PLACEHOLDER.sub(r"?\1", sql), tuple(args))
        rows = cur.fetchall()
        return rows, cur.rowcount

    async def _call(self, sql: str, args: Sequence[Any]) -> tuple[list[Row], int]:
        if self._in_tx.get():
            return await anyio.to_thread.run_sync(self._run, sql, args, limiter=self._limiter)
        async with self._lock:
            return await anyio.to_thread.run_sync(self._run, sql, args, limiter=self._limiter)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows, _ = await self._call(sql, args)
        return rows[0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows, _ = await self._call(sql, args)
        return rows

    async def execute(self, sql: str, *args: Any) -> int:
        _, count = await self._call(sql, args)
        return count

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlConn]:
        async with self._lock:
            token = self._in_tx.set(True)
            try:
                with driver_errors():
                    await self._exec("BEGIN IMMEDIATE")
                    try:
                        yield self
                        await self._exec("COMMIT")
                    except BaseException:
                        # Also when COMMIT failed (busy, disk full): the transaction is open.
                        with anyio.CancelScope(shield=True):
                            if self._conn.in_transaction:
                                await self._exec("ROLLBACK")
                        raise
            finally:
                self._in_tx.reset(token)

    async def _exec(self, sql: str) -> None:
        await anyio.to_thread.run_sync(self._conn.execute, sql, limiter=self._limiter)

    async def migrate(self, component: Component) -> list[int]:
        async with self._lock:
            return await anyio.to_thread.run_sync(
                migrate_sqlite, self._conn, component, limiter=self._limiter
            )

    async def close(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._conn.close, limiter=self._limiter)
