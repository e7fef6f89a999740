"""Stores: memory (the reference) and SQLite; Postgres for the server."""

from fynlo_sync.store.base import ServerStore, TerminalMeta, TerminalStore
from fynlo_sync.store.memory import MemoryServerStore, MemoryTerminalStore
from fynlo_sync.store.sqlite import SqliteServerStore, SqliteTerminalStore

__all__ = [
    "MemoryServerStore",
    "MemoryTerminalStore",
    "ServerStore",
    "SqliteServerStore",
    "SqliteTerminalStore",
    "TerminalMeta",
    "TerminalStore",
]
