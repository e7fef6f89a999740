"""``fynlo backup``: an online copy of the embedded server database (or of any fynlo SQLite
file, e.g. a terminal's, with ``--from``). Registered by :mod:`fynlo_sync.cli`; standard
library only at top level, and the command needs no extra."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser(
        "backup",
        help="copy the embedded database while the server runs (SQLite's backup API)",
        description=(
            "Copy the database that FYNLO_DATABASE_URL names (sqlite:///...), or --from FILE, "
            "to TARGET while the server keeps serving. PostgreSQL: use pg_dump."
        ),
    )
    backup.add_argument("target", type=Path, help="the file to write")
    backup.add_argument("--from", dest="source", type=Path, help="a SQLite file to copy")
    backup.add_argument("--overwrite", action="store_true", help="replace TARGET if it exists")
    backup.add_argument("--json", action="store_true", help="print one JSON object")
    backup.set_defaults(func=_backup)


def _backup(args: argparse.Namespace) -> int:
    from fynlo_sync.errors import StoreError
    from fynlo_sync.store.backup import backup_sqlite

    source = args.source
    if source is None:
        url = os.environ.get("FYNLO_DATABASE_URL") or "sqlite:///./fynlo.db"
        if not url.startswith("sqlite:///"):
            print(
                "fynlo backup: FYNLO_DATABASE_URL is not an embedded database; back PostgreSQL "
                "up with pg_dump (see docs/deploy.md)",
                file=sys.stderr,
            )
            return 2
        source = Path(url[len("sqlite:///") :])

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            sys.stderr.write(f"\rfynlo backup: {done}/{total} pages")
            sys.stderr.flush()

    try:
        result = backup_sqlite(source, args.target, progress=progress, overwrite=args.overwrite)
    except StoreError as exc:
        print(f"fynlo backup: {exc.detail}", file=sys.stderr)
        return 2
    if not args.json and sys.stderr.isatty():
        sys.stderr.write("\n")
    data = {"source": result.source, "target": result.target, "pages": result.pages}
    data["bytes"] = result.bytes
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(f"{result.source} -> {result.target}: {result.pages} pages, {result.bytes} bytes")
    return 0
