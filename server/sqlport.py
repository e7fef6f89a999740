"""The SQL port moved to :mod:`fynlo_sync.store.sqlport` (the stores' migrations run
through it too); these names stay importable from here."""

from fynlo_sync.store.sqlport import PgSql, SqlConn, SqliteSql, SqlPort

__all__ = ["PgSql", "SqlConn", "SqlPort", "SqliteSql"]
