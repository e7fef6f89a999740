"""The server store on PostgreSQL (asyncpg).

* :class:`PostgresServerStore` owns an asyncpg pool. Its methods are the
  :class:`~fynlo_sync.store.base.ServerStore` port, made async. ``async with
  store.transaction(tenant) as tx`` opens one transaction on one connection, takes the
  tenant's advisory lock (pushes of one tenant serialize, across every server process), and
  yields the same queries bound to that connection.
* :data:`STORE` is the ``store`` component's PostgreSQL scripts; :func:`migrate` runs a
  component through the one runner (:mod:`fynlo_sync.store.migrations`, via
  :class:`~fynlo_sync.store.sqlport.PgSql`).
* A push is written by one statement: data-modifying CTEs insert the records, feed
  entries and op outcomes from ``unnest`` arrays and upsert the node's high-water mark, so
  a whole batch costs one round trip however many ops it has.
* :class:`~fynlo_sync.replica.AsyncServerReplica` drives the replica's steps over it.
* :class:`BlockingPostgresStore` is the synchronous port over the async store (an event
  loop in a background thread), for synchronous callers: the conformance suite,
  :class:`~fynlo_sync.replica.ServerReplica`, benchmarks.

Bodies are stored as the msgspec JSON bytes of the Structs (``bytea``): the database never
parses them, and the server decodes only what it returns.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, suppress
from typing import Any, TypeVar

import msgspec

from fynlo_sync.effects import Attempt, Effect, EffectRow, Settlement
from fynlo_sync.engine import Plan
from fynlo_sync.errors import MissingDependencyError, StoreError
from fynlo_sync.ops import Change, Outcome, Record
from fynlo_sync.protocol import canonical_change
from fynlo_sync.store.base import Key, new_effect_rows, plan_body, plan_feed
from fynlo_sync.store.driver import driver_errors, translating
from fynlo_sync.store.migrations import Component

try:
    import asyncpg
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("asyncpg", "postgres") from exc

__all__ = [
    "STORE",
    "STORE_MIGRATIONS",
    "BlockingPostgresStore",
    "PostgresServerStore",
    "asyncpg_dsn",
    "migrate",
]

T = TypeVar("T")

_enc = msgspec.json.Encoder()
_rec_dec = msgspec.json.Decoder(Record)
_change_dec = msgspec.json.Decoder(Change)
_outcome_dec = msgspec.json.Decoder(Outcome)

#: Versioned migrations of the sync tables. Append; never edit a released one.
STORE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE fynlo_records (
        tenant text NOT NULL,
        collection text NOT NULL,
        record_id text NOT NULL,
        version bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (tenant, collection, record_id)
    );
    CREATE TABLE fynlo_feed (
        tenant text NOT NULL,
        seq bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (tenant, seq)
    );
    CREATE TABLE fynlo_oplog (
        tenant text NOT NULL,
        node_id text NOT NULL,
        seq bigint NOT NULL,
        op_id text NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (tenant, node_id, seq)
    );
    CREATE TABLE fynlo_nodes (
        tenant text NOT NULL,
        node_id text NOT NULL,
        high_water bigint NOT NULL,
        PRIMARY KEY (tenant, node_id)
    );
    """,
    # Compacted catch-up reads records by version (docs/protocol.md section 23); feed
    # bodies written from now on are canonical bytes, and say so.
    """
    CREATE INDEX fynlo_records_by_version ON fynlo_records (tenant, version);
    ALTER TABLE fynlo_feed ADD COLUMN canonical boolean NOT NULL DEFAULT false;
    """,
    # 3: the effects outbox (written in the commit's transaction) and every attempt.
    """
    CREATE TABLE fynlo_effects (
        tenant text NOT NULL,
        key text NOT NULL,
        plugin text NOT NULL,
        name text NOT NULL,
        payload bytea NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        failures integer NOT NULL,
        due_ms bigint NOT NULL,
        created_ms bigint NOT NULL,
        last_error text,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX fynlo_effects_due ON fynlo_effects (due_ms)
        WHERE state IN ('pending', 'running');
    CREATE TABLE fynlo_effect_attempts (
        tenant text NOT NULL,
        key text NOT NULL,
        attempt integer NOT NULL,
        started_ms bigint NOT NULL,
        finished_ms bigint,
        result text,
        error text,
        PRIMARY KEY (tenant, key, attempt)
    );
    """,
)

#: The server's sync tables on PostgreSQL: the same component as the embedded store's.
STORE = Component("store", STORE_MIGRATIONS)


def asyncpg_dsn(url: str) -> str:
    """``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://`` URL -> asyncpg DSN."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise StoreError(f"not a PostgreSQL URL: {url.split('://', maxsplit=1)[0]}://...")


def _tenant_lock(tenant: str) -> int:
    """A signed 64-bit advisory lock key for the tenant (a collision only serializes two
    tenants' pushes; it never mixes their data)."""
    digest = hashlib.blake2b(b"fynlo-tenant\0" + tenant.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(pool: Any, component: Component = STORE) -> list[int]:
    """Apply ``component``'s pending migrations on an asyncpg pool; return the versions
    applied now."""
    from fynlo_sync.store.sqlport import PgSql

    return await PgSql(pool).migrate(component)


_COMMIT = """
WITH r AS (
    INSERT INTO fynlo_records (tenant, collection, record_id, version, body)
    SELECT $1, c, i, v, b FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bytea[])
        AS t(c, i, v, b)
    ON CONFLICT (tenant, collection, record_id)
    DO UPDATE SET version = EXCLUDED.version, body = EXCLUDED.body
), f AS (
    INSERT INTO fynlo_feed (tenant, seq, body, canonical)
    SELECT $1, s, b, true FROM unnest($6::bigint[], $7::bytea[]) AS t(s, b)
), o AS (
    INSERT INTO fynlo_oplog (tenant, node_id, seq, op_id, body)
    SELECT $1, $8, s, i, b FROM unnest($9::bigint[], $10::text[], $11::bytea[]) AS t(s, i, b)
)
INSERT INTO fynlo_nodes (tenant, node_id, high_water) VALUES ($1, $8, $12)
ON CONFLICT (tenant, node_id) DO UPDATE SET high_water = EXCLUDED.high_water
"""

_EFFECT_COLUMNS = (
    "tenant, key, plugin, name, payload, state, attempts, failures, due_ms, created_ms, last_error"
)

#: A commit that also writes its effects to the outbox: the same statement, one more CTE
#: (one round trip for the whole commit).
_COMMIT_WITH_EFFECTS = _COMMIT.replace(
    "\nINSERT INTO fynlo_nodes",
    f"""\n, e AS (
    INSERT INTO fynlo_effects ({_EFFECT_COLUMNS})
    SELECT $1, k, p, n, b, 'pending', 0, 0, $17, $17, NULL
    FROM unnest($13::text[], $14::text[], $15::text[], $16::bytea[]) AS t(k, p, n, b)
    ON CONFLICT (tenant, key) DO NOTHING
)
INSERT INTO fynlo_nodes""",
    1,
)

#: A node's high-water mark and its tenant's feed cursor, in one round trip.
_HIGH_WATER_AND_CURSOR = """
SELECT (SELECT high_water FROM fynlo_nodes WHERE tenant = $1 AND node_id = $2),
       (SELECT max(seq) FROM fynlo_feed WHERE tenant = $1)
"""

_CLAIM = f"""
WITH due AS (
    SELECT tenant, key FROM fynlo_effects
    WHERE state IN ('pending', 'running') AND due_ms <= $1
    ORDER BY due_ms, tenant COLLATE "C", key COLLATE "C"
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE fynlo_effects e SET state = 'running', attempts = e.attempts + 1, due_ms = $1 + $2
    FROM due WHERE e.tenant = due.tenant AND e.key = due.key
    RETURNING e.*
), started AS (
    INSERT INTO fynlo_effect_attempts (tenant, key, attempt, started_ms)
    SELECT tenant, key, attempts, $1 FROM claimed
)
SELECT {_EFFECT_COLUMNS} FROM claimed
"""

_HISTORY = """
SELECT tenant, key, attempt, started_ms, finished_ms, result, error FROM fynlo_effect_attempts
JOIN unnest($1::text[], $2::text[]) AS k(t, y) ON tenant = k.t AND key = k.y
ORDER BY attempt
"""

_json_dec = msgspec.json.Decoder()


def _effect_rows(rows: Sequence[Any], attempts: Sequence[Any]) -> list[EffectRow]:
    history: dict[tuple[str, str], list[Attempt]] = {}
    for a in attempts:
        history.setdefault((a[0], a[1]), []).append(Attempt(a[2], a[3], a[4], a[5], a[6]))
    return [
        EffectRow(
            tenant=r[0],
            effect=Effect(r[2], r[3], _json_dec.decode(r[4]), r[1]),
            state=r[5],
            attempts=r[6],
            failures=r[7],
            due_ms=r[8],
            created_ms=r[9],
            last_error=r[10],
            history=tuple(history.get((r[0], r[1]), ())),
        )
        for r in rows
    ]


# One primary-key probe per key, whatever the planner believes about the table. A plain
# join of the keys to the table hashed every record of the tenant (or the whole table)
# whenever the statistics were stale, as during a burst of pushes before autovacuum's
# analyze: 60-80 ms a push at 20,000 records. The LIMIT keeps the subquery from being
# pulled up into such a join; the tenant as an init plan hides its value from the
# estimates, so a tenant the statistics have not seen yet (estimated at one row) does not
# send each probe through fynlo_records_by_version over all of its records.
_LOAD = """
SELECT r.body FROM unnest($2::text[], $3::text[]) AS k(c, i)
CROSS JOIN LATERAL (
    SELECT body FROM fynlo_records
    WHERE tenant = (SELECT $1::text) AND collection = k.c AND record_id = k.i
    LIMIT 1
) r
"""

# A record's version is the seq of the feed entry that wrote its current state.
_LATEST = """
SELECT f.body, f.seq, f.canonical FROM fynlo_records r
JOIN fynlo_feed f ON f.tenant = r.tenant AND f.seq = r.version
WHERE r.tenant = $1 AND r.version > $2 ORDER BY r.version LIMIT $3
"""


def _canonical_row(row: Any) -> tuple[int, bytes]:
    """(seq, canonical bytes) of a feed row (one stored before bodies were canonical is
    made canonical here)."""
    body = bytes(row[0])
    return int(row[1]), body if row[2] else canonical_change(_change_dec.decode(body))


@translating
class PostgresQueries:
    """The store's queries, over a pool (each its own transaction) or one connection."""

    def __init__(self, db: Any, locked: str | None = None) -> None:
        self._db = db
        #: The tenant whose write lock this transaction holds (``None``: not in one).
        self._locked = locked
        #: That tenant's feed cursor, read with its first high-water mark (nothing else
        #: can move it while the lock is held; a commit forgets it).
        self._cursor: int | None = None

    async def high_water(self, tenant: str, node_id: str) -> int:
        if tenant == self._locked and self._cursor is None:
            row = await self._db.fetchrow(_HIGH_WATER_AND_CURSOR, tenant, node_id)
            self._cursor = 0 if row[1] is None else int(row[1])
            return 0 if row[0] is None else int(row[0])
        value = await self._db.fetchval(
            "SELECT high_water FROM fynlo_nodes WHERE tenant = $1 AND node_id = $2",
            tenant,
            node_id,
        )
        return 0 if value is None else int(value)

    async def prior_outcomes(
        self, tenant: str, node_id: str, seqs: Sequence[int]
    ) -> dict[int, Outcome]:
        if not seqs:
            return {}
        rows = await self._db.fetch(
            "SELECT seq, body FROM fynlo_oplog WHERE tenant = $1 AND node_id = $2"
            " AND seq BETWEEN $3 AND $4",
            tenant,
            node_id,
            min(seqs),
            max(seqs),
        )
        return {int(row[0]): _outcome_dec.decode(row[1]) for row in rows}

    async def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        wanted = list(keys)
        if not wanted:
            return {}
        rows = await self._db.fetch(_LOAD, tenant, [k[0] for k in wanted], [k[1] for k in wanted])
        out: dict[Key, Record] = {}
        for row in rows:
            record = _rec_dec.decode(row[0])
            out[record.key] = record
        return out

    async def cursor(self, tenant: str) -> int:
        if tenant == self._locked and self._cursor is not None:
            return self._cursor
        value = await self._db.fetchval("SELECT max(seq) FROM fynlo_feed WHERE tenant = $1", tenant)
        return 0 if value is None else int(value)

    async def commit(self, tenant: str, plan: Plan) -> None:
        self._cursor = None
        writes = list(plan.writes.values())
        effects = new_effect_rows(tenant, plan) if plan.effects else []
        await self._db.execute(
            _COMMIT_WITH_EFFECTS if effects else _COMMIT,
            tenant,
            [r.collection for r in writes],
            [r.record_id for r in writes],
            [r.version for r in writes],
            [plan_body(plan, r.key, r) for r in writes],
            [c.seq for c in plan.changes],
            [body for _, body in plan_feed(plan)],
            plan.node_id,
            [o.seq for o in plan.new_outcomes],
            [o.op_id for o in plan.new_outcomes],
            [_enc.encode(o) for o in plan.new_outcomes],
            plan.high_water,
            *(
                (
                    [r.key for r in effects],
                    [r.effect.plugin for r in effects],
                    [r.effect.name for r in effects],
                    [_enc.encode(r.effect.payload) for r in effects],
                    plan.received_ms or 0,
                )
                if effects
                else ()
            ),
        )

    async def _with_history(self, db: Any, rows: Sequence[Any]) -> list[EffectRow]:
        if not rows:
            return []
        attempts = await db.fetch(_HISTORY, [r[0] for r in rows], [r[1] for r in rows])
        return _effect_rows(rows, attempts)

    async def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        if hasattr(self._db, "acquire"):
            async with self._db.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_CLAIM, now_ms, lease_ms, limit)
                found = await self._with_history(conn, rows)
        else:
            rows = await self._db.fetch(_CLAIM, now_ms, lease_ms, limit)
            found = await self._with_history(self._db, rows)
        return sorted(found, key=lambda r: (r.due_ms, r.tenant, r.key))

    async def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        done = await self._db.fetchval(
            """
            WITH e AS (
                UPDATE fynlo_effects SET state = $4, due_ms = $5, failures = $6, last_error = $7
                WHERE tenant = $1 AND key = $2 AND state = 'running' AND attempts = $3
                RETURNING tenant
            ), a AS (
                UPDATE fynlo_effect_attempts SET finished_ms = $8, result = $9, error = $7
                WHERE tenant = $1 AND key = $2 AND attempt = $3 AND EXISTS (SELECT 1 FROM e)
            )
            SELECT count(*) FROM e
            """,
            row.tenant,
            row.key,
            row.attempts,
            settlement.state,
            settlement.due_ms,
            settlement.failures,
            settlement.error,
            now_ms,
            settlement.result,
        )
        return bool(done)

    async def effect_rows(
        self, tenant: str | None = None, state: str | None = None
    ) -> list[EffectRow]:
        rows = await self._db.fetch(
            f"SELECT {_EFFECT_COLUMNS} FROM fynlo_effects"
            " WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR state = $2)"
            ' ORDER BY tenant COLLATE "C", key COLLATE "C"',
            tenant,
            state,
        )
        return await self._with_history(self._db, rows)

    async def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        status = await self._db.execute(
            "UPDATE fynlo_effects SET state = 'pending', due_ms = $3, failures = 0"
            " WHERE tenant = $1 AND key = $2 AND state = 'dead'",
            tenant,
            key,
            now_ms,
        )
        return bool(status == "UPDATE 1")

    async def changes(self, tenant: str, since: int, limit: int) -> list[Change]:
        rows = await self._db.fetch(
            "SELECT body FROM fynlo_feed WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            tenant,
            since,
            limit,
        )
        return [_change_dec.decode(row[0]) for row in rows]

    async def latest(self, tenant: str, since: int, limit: int) -> list[Change]:
        rows = await self._db.fetch(_LATEST, tenant, since, limit)
        return [_change_dec.decode(row[0]) for row in rows]

    async def changes_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._db.fetch(
            "SELECT body, seq, canonical FROM fynlo_feed WHERE tenant = $1 AND seq > $2"
            " ORDER BY seq LIMIT $3",
            tenant,
            since,
            limit,
        )
        return [_canonical_row(row) for row in rows]

    async def latest_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._db.fetch(_LATEST, tenant, since, limit)
        return [_canonical_row(row) for row in rows]

    async def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        if collection is None:
            rows = await self._db.fetch(
                "SELECT body FROM fynlo_records WHERE tenant = $1"
                ' ORDER BY collection COLLATE "C", record_id COLLATE "C"',
                tenant,
            )
        else:
            rows = await self._db.fetch(
                "SELECT body FROM fynlo_records WHERE tenant = $1 AND collection = $2"
                ' ORDER BY record_id COLLATE "C"',
                tenant,
                collection,
            )
        return [_rec_dec.decode(row[0]) for row in rows]

    async def high_waters(self, tenant: str) -> dict[str, int]:
        rows = await self._db.fetch(
            "SELECT node_id, high_water FROM fynlo_nodes WHERE tenant = $1"
            ' ORDER BY node_id COLLATE "C"',
            tenant,
        )
        return {row[0]: int(row[1]) for row in rows}

    async def op_log(self, tenant: str, node_id: str) -> list[Outcome]:
        rows = await self._db.fetch(
            "SELECT body FROM fynlo_oplog WHERE tenant = $1 AND node_id = $2 ORDER BY seq",
            tenant,
            node_id,
        )
        return [_outcome_dec.decode(row[0]) for row in rows]


#: Set while :meth:`PostgresServerStore.transaction` gives back a connection it committed
#: on: it used no session state (statements, a transaction-scoped lock), so the pool's
#: reset query, one more round trip, is not needed.
_CLEAN: contextvars.ContextVar[bool] = contextvars.ContextVar("fynlo_pg_clean", default=False)


async def _reset(conn: Any) -> None:
    """The pool's reset: asyncpg has already ended any open transaction; the rest of its
    default reset (advisory locks, cursors, LISTEN, settings) unless the connection is
    known clean."""
    if _CLEAN.get():
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


@translating
class PostgresServerStore(PostgresQueries):
    """Every tenant in one PostgreSQL database, over an asyncpg pool that this owns."""

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.pool = pool

    @classmethod
    async def connect(
        cls, url: str, *, min_size: int = 1, max_size: int = 10, run_migrations: bool = True
    ) -> PostgresServerStore:
        """Open a pool on ``url`` and (by default) apply the store's migrations."""
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url), min_size=min_size, max_size=max_size, reset=_reset
        )
        try:
            if run_migrations:
                await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    @asynccontextmanager
    async def transaction(self, tenant: str) -> AsyncIterator[PostgresQueries]:
        """One transaction holding the tenant's write lock. ``BEGIN`` and the lock go in
        one round trip (the key is an integer made here, never caller text); the commit,
        or the rollback on any exception, ends it."""
        with driver_errors():
            clean = None
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        f"BEGIN; SELECT pg_advisory_xact_lock({_tenant_lock(tenant)})"
                    )
                    try:
                        yield PostgresQueries(conn, locked=tenant)
                    except BaseException:
                        with suppress(Exception):  # a broken connection: the pool ends it
                            await conn.execute("ROLLBACK")
                        raise
                    await conn.execute("COMMIT")
                    clean = _CLEAN.set(True)
            finally:
                if clean is not None:
                    _CLEAN.reset(clean)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self.pool.close()


class BlockingPostgresStore:
    """The synchronous :class:`~fynlo_sync.store.base.ServerStore` port over
    :class:`PostgresServerStore`: an event loop runs in a background thread (an anyio
    blocking portal) and each call waits for it. Each thread has its own transaction."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        from anyio.from_thread import start_blocking_portal

        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self.store: PostgresServerStore = self._portal.call(
                functools.partial(
                    PostgresServerStore.connect, url, min_size=min_size, max_size=max_size
                )
            )
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._local = threading.local()

    def _q(self) -> PostgresQueries:
        tx: PostgresQueries | None = getattr(self._local, "tx", None)
        return self.store if tx is None else tx

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._portal.call(fn, *args)

    @contextmanager
    def _transaction(self, tenant: str) -> Iterator[None]:
        if getattr(self._local, "tx", None) is not None:
            yield  # nested: part of the outer transaction
            return
        cm: AbstractContextManager[PostgresQueries] = self._portal.wrap_async_context_manager(
            self.store.transaction(tenant)
        )
        with cm as tx:
            self._local.tx = tx
            try:
                yield
            finally:
                self._local.tx = None

    def transaction(self, tenant: str) -> AbstractContextManager[None]:
        return self._transaction(tenant)

    def high_water(self, tenant: str, node_id: str) -> int:
        return self._call(self._q().high_water, tenant, node_id)

    def prior_outcomes(self, tenant: str, node_id: str, seqs: Sequence[int]) -> dict[int, Outcome]:
        return self._call(self._q().prior_outcomes, tenant, node_id, seqs)

    def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        return self._call(self._q().load, tenant, list(keys))

    def cursor(self, tenant: str) -> int:
        return self._call(self._q().cursor, tenant)

    def commit(self, tenant: str, plan: Plan) -> None:
        self._call(self._q().commit, tenant, plan)

    def changes(self, tenant: str, since: int, limit: int) -> list[Change]:
        return self._call(self._q().changes, tenant, since, limit)

    def latest(self, tenant: str, since: int, limit: int) -> list[Change]:
        return self._call(self._q().latest, tenant, since, limit)

    def changes_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        return self._call(self._q().changes_bytes, tenant, since, limit)

    def latest_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        return self._call(self._q().latest_bytes, tenant, since, limit)

    def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        return self._call(self._q().records, tenant, collection)

    def high_waters(self, tenant: str) -> dict[str, int]:
        return self._call(self._q().high_waters, tenant)

    def op_log(self, tenant: str, node_id: str) -> list[Outcome]:
        return self._call(self._q().op_log, tenant, node_id)

    def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        return self._call(self._q().claim_effects, now_ms, lease_ms, limit)

    def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        return self._call(self._q().finish_effect, row, settlement, now_ms)

    def effect_rows(self, tenant: str | None = None, state: str | None = None) -> list[EffectRow]:
        return self._call(self._q().effect_rows, tenant, state)

    def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        return self._call(self._q().retry_effect, tenant, key, now_ms)

    def close(self) -> None:
        try:
            self._portal.call(self.store.close)
        finally:
            self._portal_cm.__exit__(None, None, None)
