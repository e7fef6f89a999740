"""An online copy of a SQLite database (the embedded server's, or a terminal's) through
SQLite's backup API: a consistent snapshot taken while the server keeps writing (the copy
proceeds in steps of ``pages`` pages and restarts a step a writer changed), checked with
``PRAGMA integrity_check``, written beside the target and renamed into place, as one
self-contained file (journal mode DELETE, no ``-wal`` file to carry along).

Only the standard library: a terminal or a server without extras can run it. PostgreSQL is
backed up with ``pg_dump`` (``docs/deploy.md``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fynlo_sync.errors import StoreError
from fynlo_sync.store.driver import driver_errors

__all__ = ["BackupResult", "backup_sqlite"]

#: Called with (pages copied so far, pages in all) after each step.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BackupResult:
    source: str
    target: str
    pages: int
    bytes: int


def backup_sqlite(
    source: str | Path,
    target: str | Path,
    *,
    pages: int = 1024,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> BackupResult:
    """Copy ``source`` to ``target`` while others may write to ``source``."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise StoreError(f"no database at {source}", path=str(source))
    if target.exists() and not overwrite:
        raise StoreError(f"{target} exists; choose another name or overwrite it", path=str(target))
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with driver_errors():
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dest = sqlite3.connect(partial)
            try:

                def step(status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                src.backup(dest, pages=pages, progress=step)
                dest.execute("PRAGMA journal_mode=DELETE")
                checked = dest.execute("PRAGMA integrity_check").fetchone()[0]
                if checked != "ok":
                    raise StoreError(f"the copy failed its integrity check: {checked}")
                total = dest.execute("PRAGMA page_count").fetchone()[0]
            finally:
                dest.close()
        finally:
            src.close()
    os.replace(partial, target)
    return BackupResult(str(source), str(target), int(total), target.stat().st_size)
