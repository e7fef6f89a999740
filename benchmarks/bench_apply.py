"""(1) Engine plan + SQLite apply, and (2, SQLite part) server push apply from wire bytes,
each beside raw ``executemany`` of the very same rows in the same run.

The baseline gets every row already encoded, the same schema (made by the store's own
migrations), the same statements and one transaction per batch: it is what SQLite can do
with those rows on this machine, so the ratio is how close the engine + store come to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.context import Context
from benchmarks.result import Measure, Result, Target, speed_ratio
from benchmarks.workload import TENANT, server_batches
from fynlo_sync.engine import plan_push
from fynlo_sync.ops import Batch, Record
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import encode_batch
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.base import Key, iter_keys, new_effect_rows
from fynlo_sync.store.sqlite import SqliteServerStore

__all__ = ["BatchRows", "plan_rows", "run_engine_sqlite", "run_server_sqlite", "seed_server"]

_enc = msgspec.json.Encoder()

RECORDS_SQL = (
    "INSERT OR REPLACE INTO fynlo_records(tenant, collection, record_id, version, body) "
    "VALUES (?, ?, ?, ?, ?)"
)
FEED_SQL = "INSERT INTO fynlo_feed(tenant, seq, body) VALUES (?, ?, ?)"
OPLOG_SQL = "INSERT INTO fynlo_oplog(tenant, node_id, seq, op_id, body) VALUES (?, ?, ?, ?, ?)"
NODES_SQL = (
    "INSERT INTO fynlo_nodes(tenant, node_id, high_water) VALUES (?, ?, ?) "
    "ON CONFLICT(tenant, node_id) DO UPDATE SET high_water = excluded.high_water"
)
EFFECT_COLUMNS = [
    "tenant",
    "key",
    "plugin",
    "name",
    "payload",
    "state",
    "attempts",
    "failures",
    "due_ms",
    "created_ms",
    "last_error",
]
EFFECTS_SQL = (
    f"INSERT INTO fynlo_effects({', '.join(EFFECT_COLUMNS)}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant, key) DO NOTHING"
)


@dataclass(slots=True)
class BatchRows:
    """The rows committing one batch writes, encoded: what the raw baseline inserts."""

    records: list[tuple[str, str, str, int, bytes]]
    feed: list[tuple[str, int, bytes]]
    oplog: list[tuple[str, str, int, str, bytes]]
    node: tuple[str, str, int]
    #: The outbox rows of the batch's effects (the orders plugin's kitchen tickets).
    effects: list[tuple[str, str, str, str, bytes, str, int, int, int, int, None]]

    @property
    def count(self) -> int:
        return len(self.records) + len(self.feed) + len(self.oplog) + len(self.effects) + 1


def plan_rows(batches: list[Batch], registry: Registry) -> tuple[list[BatchRows], float]:
    """Plan every batch in memory (the engine alone) and encode the rows each commit
    writes. Returns the rows and the seconds spent inside ``plan_push``."""
    state: dict[Key, Record] = {}
    high: dict[str, int] = {}
    cursor = 0
    planning = 0.0
    out: list[BatchRows] = []
    for batch in batches:
        rows = {k: state[k] for k in iter_keys(batch.ops) if k in state}
        start = time.perf_counter()
        plan = plan_push(
            batch,
            high_water=high.get(batch.node_id, 0),
            prior={},
            rows=rows,
            registry=registry,
            cursor=cursor,
        )
        planning += time.perf_counter() - start
        state.update(plan.writes)
        high[batch.node_id] = plan.high_water
        cursor = plan.cursor
        out.append(
            BatchRows(
                records=[
                    (TENANT, r.collection, r.record_id, r.version, _enc.encode(r))
                    for r in plan.writes.values()
                ],
                feed=[(TENANT, c.seq, _enc.encode(c)) for c in plan.changes],
                oplog=[
                    (TENANT, plan.node_id, o.seq, o.op_id, _enc.encode(o))
                    for o in plan.new_outcomes
                ],
                node=(TENANT, plan.node_id, plan.high_water),
                effects=[
                    (
                        TENANT,
                        e.key,
                        e.effect.plugin,
                        e.effect.name,
                        _enc.encode(e.effect.payload),
                        e.state,
                        0,
                        0,
                        e.due_ms,
                        e.created_ms,
                        None,
                    )
                    for e in new_effect_rows(TENANT, plan)
                ],
            )
        )
    return out, planning


def raw_apply(path: Path, rows: list[BatchRows]) -> float:
    """The baseline: the same rows through ``executemany``, one transaction per batch."""
    store = SqliteServerStore(path)  # same schema, same pragmas
    conn = store.db.conn
    start = time.perf_counter()
    for batch in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RECORDS_SQL, batch.records)
        conn.executemany(FEED_SQL, batch.feed)
        conn.executemany(OPLOG_SQL, batch.oplog)
        conn.execute(NODES_SQL, batch.node)
        if batch.effects:
            conn.executemany(EFFECTS_SQL, batch.effects)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def engine_apply(
    ctx: Context, path: Path, batches: Sequence[Batch | bytes], label: str
) -> tuple[float, SqliteServerStore]:
    store = SqliteServerStore(path)
    # As the server runs it: effects go to the outbox with the commit, and a worker (not
    # the push) performs them. (Inline, each push would also print every ticket.)
    replica = ServerReplica(store, ctx.registry, inline_effects=False)
    total = len(batches)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        replica.push(TENANT, batch)
        if i % 10 == 0:
            ctx.progress.step(i + 1, total, label)
    seconds = time.perf_counter() - start
    ctx.progress.step(total, total, label)
    return seconds, store


def _check(store: SqliteServerStore, rows: list[BatchRows]) -> None:
    """The engine run wrote what the plan pass says it should (else the figure is void)."""
    conn = store.db.conn
    feed = conn.execute("SELECT COUNT(*) FROM fynlo_feed WHERE tenant = ?", (TENANT,)).fetchone()[0]
    want = sum(len(b.feed) for b in rows)
    if feed != want:
        raise RuntimeError(f"engine run wrote {feed} feed rows, the plan pass {want}")


def _apply_pair(
    ctx: Context, name: str, batches: list[Batch], *, wire: bool
) -> tuple[dict[str, Any], SqliteServerStore]:
    """Time engine and raw on fresh files, ``rounds`` times each, interleaved; best of."""
    rows, planning = plan_rows(batches, ctx.registry)
    bodies = [encode_batch(b) for b in batches] if wire else None
    engine_best = raw_best = float("inf")
    kept: SqliteServerStore | None = None
    for round_ in range(ctx.scale.rounds):
        raw_path = ctx.work / f"{name}-raw-{round_}.db"
        raw_best = min(raw_best, raw_apply(raw_path, rows))
        _remove(raw_path)
        path = ctx.work / f"{name}-engine-{round_}.db"
        work: Sequence[Batch | bytes] = bodies if bodies is not None else batches
        seconds, store = engine_apply(ctx, path, work, f"round {round_ + 1} batches")
        _check(store, rows)
        engine_best = min(engine_best, seconds)
        if kept is not None:
            kept.close()
        kept = store
    assert kept is not None
    ops = sum(len(b.ops) for b in batches)
    facts = {
        "ops": ops,
        "engine_s": engine_best,
        "raw_s": raw_best,
        "plan_only_s": planning,
        "plan_only_ops_per_s": ops / planning if planning else None,
        "rows_written": sum(b.count for b in rows),
        "changes": sum(len(b.feed) for b in rows),
    }
    return facts, kept


def run_engine_sqlite(ctx: Context) -> list[Result]:
    """(1) plan_push + SqliteServerStore.commit through ServerReplica, batches already
    verified (no JSON decode, no checksum), beside raw executemany of the same rows."""
    scale = ctx.scale
    batches = server_batches(scale.apply_ops, scale.apply_batch)
    facts, store = _apply_pair(ctx, "engine", batches, wire=False)
    ctx.cache["seeded"] = (store, facts["changes"])
    ops = facts["ops"]
    result = Result(
        key="engine-sqlite",
        number=1,
        title="Engine plan + SQLite apply",
        figure=Measure("plan + SQLite apply", ops / facts["engine_s"], "ops/s"),
        baseline=Measure("raw executemany of the same rows", ops / facts["raw_s"], "ops/s"),
        ratio=speed_ratio(facts["engine_s"], facts["raw_s"]),
        target=Target(">= 0.5x raw executemany", "ratio_min", 0.5),
        params={"ops": ops, "batch": scale.apply_batch, "nodes": 4, "rounds": scale.rounds},
        details=facts,
    )
    return [result]


def run_server_sqlite(ctx: Context) -> list[Result]:
    """(2, embedded SQLite) server push apply from wire bytes (decode, MD5 verify, plan,
    commit) in batches of 100 and 1,000, beside raw executemany of the same rows."""
    scale = ctx.scale
    results = []
    for size in scale.server_batches:
        batches = server_batches(scale.apply_ops, size)
        facts, store = _apply_pair(ctx, f"server-{size}", batches, wire=True)
        store.close()
        ops = facts["ops"]
        results.append(
            Result(
                key=f"server-sqlite-b{size}",
                number=2,
                title=f"Server push apply, embedded SQLite, batches of {size:,}",
                figure=Measure("decode + verify + plan + apply", ops / facts["engine_s"], "ops/s"),
                baseline=Measure("raw executemany of the same rows", ops / facts["raw_s"], "ops/s"),
                ratio=speed_ratio(facts["engine_s"], facts["raw_s"]),
                target=Target(">= 0.5x raw executemany", "ratio_min", 0.5),
                params={"ops": ops, "batch": size, "nodes": 4, "rounds": scale.rounds},
                details=facts,
            )
        )
    return results


def seed_server(ctx: Context, changes: int) -> tuple[SqliteServerStore, int]:
    """A server file holding about ``changes`` feed entries (reusing (1)'s when it ran at
    the same size)."""
    seeded = ctx.cache.get("seeded")
    if seeded is not None and seeded[1] >= changes:
        store, count = seeded
        return store, int(count)
    batches = server_batches(changes, 1000)
    store = SqliteServerStore(ctx.work / "seeded.db")
    replica = ServerReplica(store, ctx.registry, inline_effects=False)
    for i, batch in enumerate(batches):
        replica.push(TENANT, batch)
        ctx.progress.step(i + 1, len(batches), "seeding server batches")
    count = store.cursor(TENANT)
    ctx.cache["seeded"] = (store, count)
    return store, count


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


_PG_NODES = (
    "INSERT INTO fynlo_nodes (tenant, node_id, high_water) VALUES ($1, $2, $3) "
    "ON CONFLICT (tenant, node_id) DO UPDATE SET high_water = EXCLUDED.high_water"
)


async def _pg_copy(url: str, rows: list[BatchRows]) -> float:
    """The Postgres baseline: the same rows by COPY, one transaction per batch, on a
    database with the store's schema (its own migrations)."""
    from fynlo_sync.store.postgres import PostgresServerStore

    store = await PostgresServerStore.connect(url, max_size=1)
    try:
        async with store.pool.acquire() as conn:
            start = time.perf_counter()
            for batch in rows:
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "fynlo_records",
                        records=batch.records,
                        columns=["tenant", "collection", "record_id", "version", "body"],
                    )
                    await conn.copy_records_to_table(
                        "fynlo_feed", records=batch.feed, columns=["tenant", "seq", "body"]
                    )
                    await conn.copy_records_to_table(
                        "fynlo_oplog",
                        records=batch.oplog,
                        columns=["tenant", "node_id", "seq", "op_id", "body"],
                    )
                    await conn.execute(_PG_NODES, *batch.node)
                    if batch.effects:
                        await conn.copy_records_to_table(
                            "fynlo_effects", records=batch.effects, columns=EFFECT_COLUMNS
                        )
            return time.perf_counter() - start
    finally:
        await store.close()


async def _pg_engine(ctx: Context, url: str, bodies: list[bytes], label: str) -> float:
    from fynlo_sync.replica import AsyncServerReplica
    from fynlo_sync.store.postgres import PostgresServerStore

    store = await PostgresServerStore.connect(url, max_size=2)
    try:
        replica = AsyncServerReplica(store, ctx.registry)
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            await replica.push(TENANT, body)
            if i % 10 == 0:
                ctx.progress.step(i + 1, len(bodies), label)
        seconds = time.perf_counter() - start
        feed = await store.cursor(TENANT)
        if feed != len(bodies) and feed <= 0:
            raise RuntimeError("the Postgres run wrote no feed")
        return seconds
    finally:
        await store.close()


def run_server_postgres(ctx: Context) -> list[Result]:
    """(2, PostgreSQL) server push apply from wire bytes through the async replica and the
    Postgres store, beside raw COPY of the same rows, batches of 100 and 1,000."""
    import asyncio

    from benchmarks.harness import need_postgres, postgres_database

    admin = need_postgres(ctx)
    scale = ctx.scale
    results = []
    for size in scale.server_batches:
        batches = server_batches(scale.apply_ops, size)
        rows, planning = plan_rows(batches, ctx.registry)
        keys = [r[:3] for b in rows for r in b.records]
        if len(keys) != len(set(keys)):
            raise RuntimeError("a record is written by two batches: COPY cannot upsert it")
        bodies = [encode_batch(b) for b in batches]
        engine_best = raw_best = float("inf")
        for round_ in range(scale.rounds):
            with postgres_database(admin, f"copy{size}") as url:
                raw_best = min(raw_best, asyncio.run(_pg_copy(url, rows)))
            with postgres_database(admin, f"apply{size}") as url:
                seconds = asyncio.run(
                    _pg_engine(ctx, url, bodies, f"round {round_ + 1} batches of {size}")
                )
                engine_best = min(engine_best, seconds)
        ops = sum(len(b.ops) for b in batches)
        results.append(
            Result(
                key=f"server-postgres-b{size}",
                number=2,
                title=f"Server push apply, PostgreSQL, batches of {size:,}",
                figure=Measure("decode + verify + plan + apply", ops / engine_best, "ops/s"),
                baseline=Measure("raw COPY of the same rows", ops / raw_best, "ops/s"),
                ratio=speed_ratio(engine_best, raw_best),
                target=Target(">= 0.4x raw COPY", "ratio_min", 0.4),
                params={"ops": ops, "batch": size, "nodes": 4, "rounds": scale.rounds},
                details={
                    "ops": ops,
                    "engine_s": engine_best,
                    "raw_s": raw_best,
                    "plan_only_s": planning,
                    "rows_written": sum(b.count for b in rows),
                },
            )
        )
    return results
