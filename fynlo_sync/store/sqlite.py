"""SQLite stores: the terminal's local database, and the server's embedded one.

Migrations are SQL text run by :mod:`fynlo_sync.store.migrations` (components ``terminal``
and ``store``, recorded in ``fynlo_migrations``; every table is ``fynlo_*``; a file of
release 0.1.0 is adopted in place). Hot paths use prepared ``executemany`` on the
connection. The database runs
in WAL mode; ``synchronous`` is ``NORMAL`` by default (a commit survives a crash of the
process, as the SIGKILL test shows; pass ``synchronous="FULL"`` to survive power loss too).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from fynlo_sync.effects import Attempt, Effect, EffectRow, Settlement
from fynlo_sync.engine import Plan
from fynlo_sync.errors import StoreError
from fynlo_sync.ops import Change, Op, Outcome, Record
from fynlo_sync.protocol import Row, canonical_change
from fynlo_sync.store.base import Key, TerminalMeta, new_effect_rows, plan_body, plan_feed
from fynlo_sync.store.driver import driver_errors, translated, translating
from fynlo_sync.store.migrations import Component, Legacy, migrate_sqlite

__all__ = [
    "SERVER_MIGRATIONS",
    "STORE",
    "TERMINAL",
    "TERMINAL_MIGRATIONS",
    "SqliteServerStore",
    "SqliteTerminalStore",
    "connect",
]

_rec_enc = msgspec.json.Encoder()
_rec_dec = msgspec.json.Decoder(Record)
_op_dec = msgspec.json.Decoder(Op)
_change_dec = msgspec.json.Decoder(Change)
_outcome_dec = msgspec.json.Decoder(Outcome)


def _recanonical(body: bytes) -> bytes:
    """A feed body stored before bodies were canonical, made canonical."""
    return canonical_change(_change_dec.decode(body))


@translated
def connect(
    path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> sqlite_utils.Database:
    """Open (creating if needed) a SQLite database in WAL mode, in autocommit mode so that
    transactions are explicit. A write waits up to ``busy_timeout_ms`` for another writer,
    then raises :class:`~fynlo_sync.errors.StoreBusyError`."""
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise StoreError(f"unknown synchronous level {synchronous!r}")
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout_ms / 1000,
    )
    db = sqlite_utils.Database(conn)
    if str(path) != ":memory:":
        db.enable_wal()
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return db


def _migrate_or_close(db: sqlite_utils.Database, component: Component) -> None:
    try:
        migrate_sqlite(db.conn, component)
    except BaseException:
        db.conn.close()
        raise


class _Transactional:
    _db: sqlite_utils.Database

    def _init_tx(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            conn = self._db.conn
            with driver_errors():
                conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield
                    conn.execute("COMMIT")
                except BaseException:
                    # Also when COMMIT failed (busy, disk full): the transaction stays open.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    self._depth = 0


#: The terminal's migrations (SQL text). Append; never edit a released one.
TERMINAL_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE fynlo_meta (
        id INTEGER PRIMARY KEY,
        node_id TEXT,
        next_seq INTEGER,
        cursor INTEGER,
        acked_seq INTEGER,
        hlc TEXT
    );
    CREATE TABLE fynlo_rows (
        collection TEXT,
        record_id TEXT,
        body BLOB,
        PRIMARY KEY (collection, record_id)
    );
    CREATE TABLE fynlo_server_rows (
        collection TEXT,
        record_id TEXT,
        body BLOB,
        PRIMARY KEY (collection, record_id)
    );
    CREATE TABLE fynlo_outbox (
        seq INTEGER PRIMARY KEY,
        collection TEXT,
        record_id TEXT,
        body BLOB,
        acked_cursor INTEGER
    );
    CREATE INDEX fynlo_outbox_key ON fynlo_outbox (collection, record_id);
    CREATE TABLE fynlo_outcomes (
        seq INTEGER PRIMARY KEY,
        body BLOB
    );
    """,
    # The staging area of a compacted catch-up (docs/protocol.md 23.4).
    """
    CREATE TABLE fynlo_staged (
        collection TEXT,
        record_id TEXT,
        body BLOB,
        PRIMARY KEY (collection, record_id)
    );
    ALTER TABLE fynlo_meta ADD COLUMN stage_cursor INTEGER;
    ALTER TABLE fynlo_meta ADD COLUMN stage_hlc TEXT;
    """,
    # 3: a catch-up's records are written once, into the server's state (see
    # ``SqliteTerminalStore``): a staged row carries its catch-up's number, hidden until
    # promoted; the confirmed row it replaced waits in ``fynlo_server_prior``; a server row
    # with ``shared`` = 1 is the local view too, unless ``fynlo_rows`` holds the key. A
    # catch-up staged by the previous layout moves over as it is.
    """
    ALTER TABLE fynlo_server_rows ADD COLUMN stage INTEGER;
    ALTER TABLE fynlo_server_rows ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE fynlo_server_prior (
        collection TEXT,
        record_id TEXT,
        body BLOB,
        shared INTEGER NOT NULL,
        PRIMARY KEY (collection, record_id)
    );
    ALTER TABLE fynlo_meta ADD COLUMN stage_epoch INTEGER;
    ALTER TABLE fynlo_meta ADD COLUMN epochs INTEGER NOT NULL DEFAULT 0;
    INSERT INTO fynlo_server_prior(collection, record_id, body, shared)
        SELECT s.collection, s.record_id, s.body, s.shared FROM fynlo_server_rows s
        JOIN fynlo_staged g ON g.collection = s.collection AND g.record_id = s.record_id
        WHERE (SELECT stage_cursor FROM fynlo_meta WHERE id = 1) IS NOT NULL;
    INSERT INTO fynlo_server_rows(collection, record_id, body, stage, shared)
        SELECT collection, record_id, body, 1, 1 FROM fynlo_staged
        WHERE (SELECT stage_cursor FROM fynlo_meta WHERE id = 1) IS NOT NULL
        ON CONFLICT(collection, record_id) DO UPDATE
        SET body = excluded.body, stage = 1, shared = 1;
    UPDATE fynlo_meta SET epochs = 1,
        stage_epoch = CASE WHEN stage_cursor IS NULL THEN NULL ELSE 1 END;
    DROP TABLE fynlo_staged;
    """,
    # 4: staging keeps the confirmed row it replaces by a trigger, so a record staged
    # over nothing (most of a catch-up) costs one write, not a lookup and a write.
    """
    CREATE TRIGGER fynlo_server_rows_keep_prior BEFORE UPDATE OF stage ON fynlo_server_rows
    WHEN new.stage IS NOT NULL AND coalesce(old.stage, 0) != new.stage
    BEGIN
        INSERT OR IGNORE INTO fynlo_server_prior(collection, record_id, body, shared)
        VALUES (old.collection, old.record_id, old.body, old.shared);
    END;
    """,
)

#: A server row is hidden while its catch-up is staged (``stage`` = the staging number).
_VISIBLE = "coalesce(s.stage, 0) != coalesce((SELECT stage_epoch FROM fynlo_meta WHERE id = 1), -1)"

TERMINAL = Component(
    "terminal",
    TERMINAL_MIGRATIONS,
    Legacy(
        renames=tuple(
            (name, f"fynlo_{name}")
            for name in ("meta", "rows", "server_rows", "outbox", "outcomes")
        ),
        after="DROP INDEX IF EXISTS idx_outbox_collection_record_id;"
        " CREATE INDEX fynlo_outbox_key ON fynlo_outbox (collection, record_id)",
    ),
)


@translating
class SqliteTerminalStore(_Transactional):
    """A terminal's SQLite file. A local write (state + outbox) is one transaction."""

    def __init__(
        self,
        path: str | Path,
        node_id: str,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        self._db = connect(path, synchronous, busy_timeout_ms)
        self._init_tx()
        _migrate_or_close(self._db, TERMINAL)
        conn = self._db.conn
        row = conn.execute("SELECT node_id FROM fynlo_meta WHERE id = 1").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO fynlo_meta(id, node_id, next_seq, cursor, acked_seq, hlc) "
                "VALUES (1, ?, 1, 0, 0, '0')",
                (node_id,),
            )
        elif row[0] != node_id:
            raise StoreError(f"{path} belongs to node {row[0]!r}, not {node_id!r}")

    @property
    def db(self) -> sqlite_utils.Database:
        return self._db

    def transaction(self) -> Any:
        return self._atomic()

    def meta(self) -> TerminalMeta:
        row = self._db.conn.execute(
            "SELECT node_id, next_seq, cursor, acked_seq, hlc FROM fynlo_meta WHERE id = 1"
        ).fetchone()
        return TerminalMeta(row[0], row[1], row[2], row[3], int(row[4]))

    def set_meta(self, meta: TerminalMeta) -> None:
        self._db.conn.execute(
            "UPDATE fynlo_meta SET next_seq = ?, cursor = ?, acked_seq = ?, hlc = ? WHERE id = 1",
            (meta.next_seq, meta.cursor, meta.acked_seq, str(meta.hlc)),
        )

    def _put_rows(self, table: str, rows: Iterable[Row]) -> None:
        self._db.conn.executemany(
            f"INSERT OR REPLACE INTO {table}(collection, record_id, body) VALUES (?, ?, ?)",
            rows,
        )

    def _epoch(self) -> int | None:
        row = self._db.conn.execute("SELECT stage_epoch FROM fynlo_meta WHERE id = 1").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _decoded(self, cur: Iterable[Sequence[Any]], at: int = 0) -> list[Record]:
        return [_rec_dec.decode(row[at]) for row in cur]

    # The local view: ``fynlo_rows`` where it holds the key (``body`` NULL: absent), else
    # the confirmed server row when it is ``shared``. The server's state: visible rows of
    # ``fynlo_server_rows``, else (for a key staged now) its row in ``fynlo_server_prior``.

    def get(self, key: Key) -> Record | None:
        row = self._db.conn.execute(
            "SELECT body FROM fynlo_rows WHERE collection = ?1 AND record_id = ?2 "
            "UNION ALL SELECT CASE WHEN s.shared THEN s.body END FROM fynlo_server_rows s "
            f"WHERE s.collection = ?1 AND s.record_id = ?2 AND {_VISIBLE} "
            "UNION ALL SELECT CASE WHEN shared THEN body END FROM fynlo_server_prior "
            "WHERE collection = ?1 AND record_id = ?2 LIMIT 1",
            key,
        ).fetchone()
        return None if row is None or row[0] is None else _rec_dec.decode(row[0])

    def put(self, records: Iterable[Record]) -> None:
        self._put_rows(
            "fynlo_rows", [(r.collection, r.record_id, _rec_enc.encode(r)) for r in records]
        )

    def put_rows(self, rows: Iterable[Row]) -> None:
        self._put_rows("fynlo_rows", rows)

    def records(self, collection: str | None = None) -> list[Record]:
        where, args = ("", ()) if collection is None else ("AND collection = ?1 ", (collection,))
        swhere = where.replace("collection", "s.collection")
        absent = (
            "NOT EXISTS (SELECT 1 FROM fynlo_rows r "
            "WHERE r.collection = s.collection AND r.record_id = s.record_id)"
        )
        cur = self._db.conn.execute(
            "SELECT collection, record_id, body FROM fynlo_rows "
            f"WHERE body IS NOT NULL {where}"
            "UNION ALL SELECT s.collection, s.record_id, s.body FROM fynlo_server_rows s "
            f"WHERE s.shared AND {_VISIBLE} {swhere}AND {absent} "
            "UNION ALL SELECT s.collection, s.record_id, s.body FROM fynlo_server_prior s "
            f"WHERE s.shared {swhere}AND {absent} "
            "ORDER BY 1, 2",
            args,
        )
        return self._decoded(cur, 2)

    def forget(self, key: Key) -> None:
        self._db.conn.execute(
            "INSERT OR REPLACE INTO fynlo_rows(collection, record_id, body) VALUES (?, ?, NULL)",
            key,
        )

    def get_server(self, key: Key) -> Record | None:
        row = self._db.conn.execute(
            "SELECT s.body FROM fynlo_server_rows s "
            f"WHERE s.collection = ?1 AND s.record_id = ?2 AND {_VISIBLE} "
            "UNION ALL SELECT body FROM fynlo_server_prior "
            "WHERE collection = ?1 AND record_id = ?2 LIMIT 1",
            key,
        ).fetchone()
        return None if row is None else _rec_dec.decode(row[0])

    def put_server(self, records: Iterable[Record]) -> None:
        self.put_server_rows([(r.collection, r.record_id, _rec_enc.encode(r)) for r in records])

    def put_server_rows(self, rows: Iterable[Row]) -> None:
        # A shared row's local view stays what it was: it moves to ``fynlo_rows`` first.
        rows = list(rows)
        conn = self._db.conn
        keys = [(c, r) for c, r, _ in rows]
        conn.executemany(
            "INSERT OR IGNORE INTO fynlo_rows(collection, record_id, body) "
            "SELECT s.collection, s.record_id, s.body FROM fynlo_server_rows s "
            f"WHERE s.collection = ?1 AND s.record_id = ?2 AND s.shared AND {_VISIBLE} "
            "UNION ALL SELECT collection, record_id, body FROM fynlo_server_prior "
            "WHERE collection = ?1 AND record_id = ?2 AND shared",
            keys,
        )
        epoch = self._epoch()
        if epoch is not None:
            # A key staged now keeps its staged row: the confirmed state is its prior row.
            staged = {
                (c, r)
                for c, r in keys
                if conn.execute(
                    "SELECT 1 FROM fynlo_server_rows WHERE collection = ? AND record_id = ? "
                    "AND stage = ?",
                    (c, r, epoch),
                ).fetchone()
            }
            conn.executemany(
                "INSERT OR REPLACE INTO fynlo_server_prior(collection, record_id, body, shared) "
                "VALUES (?, ?, ?, 0)",
                [row for row in rows if (row[0], row[1]) in staged],
            )
            rows = [row for row in rows if (row[0], row[1]) not in staged]
        conn.executemany(
            "INSERT OR REPLACE INTO fynlo_server_rows(collection, record_id, body, stage, shared) "
            "VALUES (?, ?, ?, NULL, 0)",
            rows,
        )

    def put_confirmed_rows(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if self._epoch() is not None:
            self.put_server_rows(rows)
            self.put_rows(rows)
            return
        conn = self._db.conn
        conn.executemany(
            "INSERT OR REPLACE INTO fynlo_server_rows(collection, record_id, body, stage, shared) "
            "VALUES (?, ?, ?, NULL, 1)",
            rows,
        )
        conn.executemany(
            "DELETE FROM fynlo_rows WHERE collection = ? AND record_id = ?",
            [(c, r) for c, r, _ in rows],
        )

    def server_records(self) -> list[Record]:
        cur = self._db.conn.execute(
            "SELECT s.collection, s.record_id, s.body FROM fynlo_server_rows s "
            f"WHERE {_VISIBLE} UNION ALL "
            "SELECT collection, record_id, body FROM fynlo_server_prior ORDER BY 1, 2"
        )
        return self._decoded(cur, 2)

    def append_outbox(self, op: Op) -> None:
        self._db.conn.execute(
            "INSERT INTO fynlo_outbox(seq, collection, record_id, body, acked_cursor) "
            "VALUES (?, ?, ?, ?, NULL)",
            (op.seq, op.collection, op.record_id, _rec_enc.encode(op)),
        )

    def outbox(self, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        cur = self._db.conn.execute(
            "SELECT body FROM fynlo_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, -1 if limit is None else limit),
        )
        return [_op_dec.decode(row[0]) for row in cur]

    def outbox_for(self, key: Key) -> list[Op]:
        cur = self._db.conn.execute(
            "SELECT body FROM fynlo_outbox WHERE collection = ? AND record_id = ? ORDER BY seq", key
        )
        return [_op_dec.decode(row[0]) for row in cur]

    def ack(self, upto_seq: int, cursor: int) -> None:
        self._db.conn.execute(
            "UPDATE fynlo_outbox SET acked_cursor = ? WHERE seq <= ? "
            "AND (acked_cursor IS NULL OR acked_cursor > ?)",
            (cursor, upto_seq, cursor),
        )

    def trim(self, cursor: int) -> list[Op]:
        conn = self._db.conn
        cur = conn.execute(
            "SELECT body FROM fynlo_outbox WHERE acked_cursor IS NOT NULL AND acked_cursor <= ? "
            "ORDER BY seq",
            (cursor,),
        )
        ops = [_op_dec.decode(row[0]) for row in cur]
        conn.execute(
            "DELETE FROM fynlo_outbox WHERE acked_cursor IS NOT NULL AND acked_cursor <= ?",
            (cursor,),
        )
        return ops

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self._db.conn.executemany(
            "INSERT OR REPLACE INTO fynlo_outcomes(seq, body) VALUES (?, ?)",
            [(o.seq, _rec_enc.encode(o)) for o in outcomes],
        )

    def outcomes(self) -> list[Outcome]:
        cur = self._db.conn.execute("SELECT body FROM fynlo_outcomes ORDER BY seq")
        return [_outcome_dec.decode(row[0]) for row in cur]

    # Staging (docs/protocol.md 23.4): each staged record is written once, into
    # ``fynlo_server_rows`` with ``stage`` = this catch-up's number and ``shared`` = 1, and
    # stays hidden while that number is ``fynlo_meta.stage_epoch``; a confirmed row it
    # replaces is kept in ``fynlo_server_prior``. Promoting is then a few small writes
    # (the number cleared, the prior rows dropped, the kept keys' local view held), not a
    # copy of every record into two tables.

    def stage(self, records: Iterable[Record], cursor: int, hlc: int) -> None:
        rows = [(r.collection, r.record_id, _rec_enc.encode(r)) for r in records]
        self.stage_rows(rows, cursor, hlc)

    def stage_rows(self, rows: Iterable[Row], cursor: int, hlc: int) -> None:
        conn = self._db.conn
        epoch = self._epoch()
        if epoch is None:
            conn.execute(
                "UPDATE fynlo_meta SET epochs = epochs + 1, stage_epoch = epochs + 1 WHERE id = 1"
            )
            epoch = self._epoch()
        # A confirmed row replaced here moves to fynlo_server_prior by the trigger of
        # terminal migration 4.
        conn.executemany(
            "INSERT INTO fynlo_server_rows(collection, record_id, body, stage, shared) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT(collection, record_id) DO UPDATE "
            "SET body = excluded.body, stage = excluded.stage, shared = 1",
            [(c, r, b, epoch) for c, r, b in rows],
        )
        self._staged_at(cursor, hlc)

    def _staged_at(self, cursor: int, hlc: int) -> None:
        before = self.staging()
        top = hlc if before is None else max(before[1], hlc)
        self._db.conn.execute(
            "UPDATE fynlo_meta SET stage_cursor = ?, stage_hlc = ? WHERE id = 1",
            (cursor, str(top)),
        )

    def staging(self) -> tuple[int, int] | None:
        row = self._db.conn.execute(
            "SELECT stage_cursor, stage_hlc FROM fynlo_meta WHERE id = 1"
        ).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def promote_staged(self, keep_local: Iterable[Key]) -> None:
        conn = self._db.conn
        epoch = self._epoch()
        if epoch is not None:
            kept = sorted(set(keep_local))
            # A kept key's local view stays as it was (the caller rebases it).
            conn.executemany(
                "INSERT OR IGNORE INTO fynlo_rows(collection, record_id, body) "
                "SELECT collection, record_id, body FROM fynlo_server_prior "
                "WHERE collection = ? AND record_id = ? AND shared",
                kept,
            )
            conn.executemany(
                "UPDATE fynlo_server_rows SET shared = 0 "
                "WHERE collection = ? AND record_id = ? AND stage = ?",
                [(c, r, epoch) for c, r in kept],
            )
            # Every other staged key's local view becomes its staged record.
            conn.execute(
                "DELETE FROM fynlo_rows WHERE EXISTS (SELECT 1 FROM fynlo_server_rows s "
                "WHERE s.collection = fynlo_rows.collection "
                "AND s.record_id = fynlo_rows.record_id AND s.stage = ? AND s.shared)",
                (epoch,),
            )
            conn.execute("DELETE FROM fynlo_server_prior")
        self._unstage()

    def clear_staged(self) -> None:
        conn = self._db.conn
        epoch = self._epoch()
        if epoch is not None:
            conn.execute("DELETE FROM fynlo_server_rows WHERE stage = ?", (epoch,))
            conn.execute(
                "INSERT INTO fynlo_server_rows(collection, record_id, body, stage, shared) "
                "SELECT collection, record_id, body, NULL, shared FROM fynlo_server_prior"
            )
            conn.execute("DELETE FROM fynlo_server_prior")
        self._unstage()

    def _unstage(self) -> None:
        self._db.conn.execute(
            "UPDATE fynlo_meta SET stage_cursor = NULL, stage_hlc = NULL, stage_epoch = NULL "
            "WHERE id = 1"
        )

    def close(self) -> None:
        self._db.conn.close()


#: The embedded server's sync tables (SQLite; PostgreSQL's are in
#: :mod:`fynlo_sync.store.postgres`, the same component). Append; never edit a released one.
SERVER_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE fynlo_records (
        tenant TEXT,
        collection TEXT,
        record_id TEXT,
        version INTEGER,
        body BLOB,
        PRIMARY KEY (tenant, collection, record_id)
    );
    CREATE TABLE fynlo_feed (
        tenant TEXT,
        seq INTEGER,
        body BLOB,
        PRIMARY KEY (tenant, seq)
    );
    CREATE TABLE fynlo_oplog (
        tenant TEXT,
        node_id TEXT,
        seq INTEGER,
        op_id TEXT,
        body BLOB,
        PRIMARY KEY (tenant, node_id, seq)
    );
    CREATE TABLE fynlo_nodes (
        tenant TEXT,
        node_id TEXT,
        high_water INTEGER,
        PRIMARY KEY (tenant, node_id)
    );
    """,
    # Compacted catch-up reads records by version (docs/protocol.md section 23); feed
    # bodies written from now on are canonical bytes (pages are made of them as they are)
    # and say so; older rows are canonicalised when read.
    """
    CREATE INDEX fynlo_records_by_version ON fynlo_records (tenant, version);
    ALTER TABLE fynlo_feed ADD COLUMN canonical INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the effects outbox (written in the commit's transaction) and every attempt.
    """
    CREATE TABLE fynlo_effects (
        tenant TEXT,
        key TEXT,
        plugin TEXT,
        name TEXT,
        payload BLOB,
        state TEXT,
        attempts INTEGER,
        failures INTEGER,
        due_ms INTEGER,
        created_ms INTEGER,
        last_error TEXT,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX fynlo_effects_due ON fynlo_effects (state, due_ms);
    CREATE TABLE fynlo_effect_attempts (
        tenant TEXT,
        key TEXT,
        attempt INTEGER,
        started_ms INTEGER,
        finished_ms INTEGER,
        result TEXT,
        error TEXT,
        PRIMARY KEY (tenant, key, attempt)
    );
    """,
)

_EFFECT_COLUMNS = (
    "tenant, key, plugin, name, payload, state, attempts, failures, due_ms, created_ms, last_error"
)


def _effect_row(row: Sequence[Any], history: tuple[Attempt, ...] = ()) -> EffectRow:
    effect = Effect(row[2], row[3], _json_dec.decode(row[4]), row[1])
    return EffectRow(
        tenant=row[0],
        effect=effect,
        state=row[5],
        attempts=row[6],
        failures=row[7],
        due_ms=row[8],
        created_ms=row[9],
        last_error=row[10],
        history=history,
    )


_json_dec = msgspec.json.Decoder()


STORE = Component(
    "store",
    SERVER_MIGRATIONS,
    Legacy(renames=tuple((n, f"fynlo_{n}") for n in ("records", "feed", "oplog", "nodes"))),
)


@translating
class SqliteServerStore(_Transactional):
    """The server's embedded store: every tenant in one SQLite file."""

    def __init__(
        self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> None:
        self._db = connect(path, synchronous, busy_timeout_ms)
        self._init_tx()
        _migrate_or_close(self._db, STORE)

    @property
    def db(self) -> sqlite_utils.Database:
        return self._db

    def transaction(self, tenant: str) -> Any:
        return self._atomic()

    def high_water(self, tenant: str, node_id: str) -> int:
        row = self._db.conn.execute(
            "SELECT high_water FROM fynlo_nodes WHERE tenant = ? AND node_id = ?", (tenant, node_id)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def prior_outcomes(self, tenant: str, node_id: str, seqs: Sequence[int]) -> dict[int, Outcome]:
        if not seqs:
            return {}
        cur = self._db.conn.execute(
            "SELECT seq, body FROM fynlo_oplog WHERE tenant = ? AND node_id = ?"
            " AND seq BETWEEN ? AND ?",
            (tenant, node_id, min(seqs), max(seqs)),
        )
        return {row[0]: _outcome_dec.decode(row[1]) for row in cur}

    def load(self, tenant: str, keys: Iterable[Key]) -> dict[Key, Record]:
        # One ``record_id IN (...)`` per collection: a search of the primary key. (A chain
        # of ``(collection = ? AND record_id = ?) OR ...`` made SQLite scan every record of
        # the tenant, so each push got slower as the tenant grew.)
        conn = self._db.conn
        out: dict[Key, Record] = {}
        wanted: dict[str, list[str]] = {}
        for collection, record_id in keys:
            wanted.setdefault(collection, []).append(record_id)
        for collection in sorted(wanted):
            ids = wanted[collection]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cur = conn.execute(
                    "SELECT body FROM fynlo_records WHERE tenant = ? AND collection = ? "
                    f"AND record_id IN ({marks})",
                    [tenant, collection, *chunk],
                )
                for (body,) in cur:
                    record = _rec_dec.decode(body)
                    out[record.key] = record
        return out

    def cursor(self, tenant: str) -> int:
        row = self._db.conn.execute(
            "SELECT MAX(seq) FROM fynlo_feed WHERE tenant = ?", (tenant,)
        ).fetchone()
        return int(row[0] or 0)

    def commit(self, tenant: str, plan: Plan) -> None:
        conn = self._db.conn
        conn.executemany(
            "INSERT OR REPLACE INTO fynlo_records(tenant, collection, record_id, version, body) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (tenant, r.collection, r.record_id, r.version, plan_body(plan, key, r))
                for key, r in plan.writes.items()
            ],
        )
        conn.executemany(
            "INSERT INTO fynlo_feed(tenant, seq, body, canonical) VALUES (?, ?, ?, 1)",
            [(tenant, c.seq, body) for c, body in plan_feed(plan)],
        )
        conn.executemany(
            "INSERT INTO fynlo_oplog(tenant, node_id, seq, op_id, body) VALUES (?, ?, ?, ?, ?)",
            [(tenant, plan.node_id, o.seq, o.op_id, _rec_enc.encode(o)) for o in plan.new_outcomes],
        )
        conn.execute(
            "INSERT INTO fynlo_nodes(tenant, node_id, high_water) VALUES (?, ?, ?) "
            "ON CONFLICT(tenant, node_id) DO UPDATE SET high_water = excluded.high_water",
            (tenant, plan.node_id, plan.high_water),
        )
        if plan.effects:
            conn.executemany(
                f"INSERT INTO fynlo_effects({_EFFECT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant, key) DO NOTHING",
                [
                    (
                        tenant,
                        r.key,
                        r.effect.plugin,
                        r.effect.name,
                        _rec_enc.encode(r.effect.payload),
                        r.state,
                        0,
                        0,
                        r.due_ms,
                        r.created_ms,
                        None,
                    )
                    for r in new_effect_rows(tenant, plan)
                ],
            )

    def claim_effects(self, now_ms: int, lease_ms: int, limit: int) -> list[EffectRow]:
        with self._atomic():
            conn = self._db.conn
            rows = conn.execute(
                f"SELECT {_EFFECT_COLUMNS} FROM fynlo_effects "
                "WHERE state IN ('pending', 'running') AND due_ms <= ? "
                "ORDER BY due_ms, tenant, key LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            until = now_ms + lease_ms
            conn.executemany(
                "UPDATE fynlo_effects SET state = 'running', attempts = ?, due_ms = ? "
                "WHERE tenant = ? AND key = ?",
                [(row[6] + 1, until, row[0], row[1]) for row in rows],
            )
            conn.executemany(
                "INSERT INTO fynlo_effect_attempts(tenant, key, attempt, started_ms) "
                "VALUES (?, ?, ?, ?)",
                [(row[0], row[1], row[6] + 1, now_ms) for row in rows],
            )
            claimed = []
            for row in rows:
                # a first attempt has no history to read back
                history = (
                    self._history(row[0], row[1])
                    if row[6]
                    else (Attempt(attempt=1, started_ms=now_ms),)
                )
                fresh = (*row[:5], "running", row[6] + 1, row[7], until, *row[9:])
                claimed.append(_effect_row(fresh, history))
            return claimed

    def _history(self, tenant: str, key: str) -> tuple[Attempt, ...]:
        cur = self._db.conn.execute(
            "SELECT attempt, started_ms, finished_ms, result, error FROM fynlo_effect_attempts "
            "WHERE tenant = ? AND key = ? ORDER BY attempt",
            (tenant, key),
        )
        return tuple(Attempt(*row) for row in cur)

    def finish_effect(self, row: EffectRow, settlement: Settlement, now_ms: int) -> bool:
        with self._atomic():
            conn = self._db.conn
            cur = conn.execute(
                "UPDATE fynlo_effects SET state = ?, due_ms = ?, failures = ?, last_error = ? "
                "WHERE tenant = ? AND key = ? AND state = 'running' AND attempts = ?",
                (
                    settlement.state,
                    settlement.due_ms,
                    settlement.failures,
                    settlement.error,
                    row.tenant,
                    row.key,
                    row.attempts,
                ),
            )
            if cur.rowcount != 1:
                return False
            conn.execute(
                "UPDATE fynlo_effect_attempts SET finished_ms = ?, result = ?, error = ? "
                "WHERE tenant = ? AND key = ? AND attempt = ?",
                (now_ms, settlement.result, settlement.error, row.tenant, row.key, row.attempts),
            )
            return True

    def effect_rows(self, tenant: str | None = None, state: str | None = None) -> list[EffectRow]:
        where, args = [], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.conn.execute(
            f"SELECT {_EFFECT_COLUMNS} FROM fynlo_effects {clause}ORDER BY tenant, key", args
        ).fetchall()
        return [_effect_row(row, self._history(row[0], row[1])) for row in rows]

    def retry_effect(self, tenant: str, key: str, now_ms: int) -> bool:
        with self._atomic():
            cur = self._db.conn.execute(
                "UPDATE fynlo_effects SET state = 'pending', due_ms = ?, failures = 0 "
                "WHERE tenant = ? AND key = ? AND state = 'dead'",
                (now_ms, tenant, key),
            )
            return cur.rowcount == 1

    def changes(self, tenant: str, since: int, limit: int) -> list[Change]:
        cur = self._db.conn.execute(
            "SELECT body FROM fynlo_feed WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
            (tenant, since, limit),
        )
        return [_change_dec.decode(row[0]) for row in cur]

    def latest(self, tenant: str, since: int, limit: int) -> list[Change]:
        return [_change_dec.decode(body) for _, body in self.latest_bytes(tenant, since, limit)]

    def changes_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        cur = self._db.conn.execute(
            "SELECT seq, body, canonical FROM fynlo_feed WHERE tenant = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (tenant, since, limit),
        )
        return [(seq, body if ok else _recanonical(body)) for seq, body, ok in cur]

    def latest_bytes(self, tenant: str, since: int, limit: int) -> list[tuple[int, bytes]]:
        # A record's version is the seq of the feed entry that wrote its current state.
        cur = self._db.conn.execute(
            "SELECT f.seq, f.body, f.canonical FROM fynlo_records r "
            "JOIN fynlo_feed f ON f.tenant = r.tenant AND f.seq = r.version "
            "WHERE r.tenant = ? AND r.version > ? ORDER BY r.version LIMIT ?",
            (tenant, since, limit),
        )
        return [(seq, body if ok else _recanonical(body)) for seq, body, ok in cur]

    def records(self, tenant: str, collection: str | None = None) -> list[Record]:
        if collection is None:
            cur = self._db.conn.execute(
                "SELECT body FROM fynlo_records WHERE tenant = ? ORDER BY collection, record_id",
                (tenant,),
            )
        else:
            cur = self._db.conn.execute(
                "SELECT body FROM fynlo_records WHERE tenant = ? AND collection = ?"
                " ORDER BY record_id",
                (tenant, collection),
            )
        return [_rec_dec.decode(row[0]) for row in cur]

    def high_waters(self, tenant: str) -> dict[str, int]:
        cur = self._db.conn.execute(
            "SELECT node_id, high_water FROM fynlo_nodes WHERE tenant = ? ORDER BY node_id",
            (tenant,),
        )
        return {row[0]: int(row[1]) for row in cur}

    def op_log(self, tenant: str, node_id: str) -> list[Outcome]:
        cur = self._db.conn.execute(
            "SELECT body FROM fynlo_oplog WHERE tenant = ? AND node_id = ? ORDER BY seq",
            (tenant, node_id),
        )
        return [_outcome_dec.decode(row[0]) for row in cur]

    def close(self) -> None:
        self._db.conn.close()
