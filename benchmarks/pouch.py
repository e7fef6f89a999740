"""The PouchDB peer: Node + ``pouchdb`` + ``pouchdb-adapter-memory`` from npm, installed on
first use into ``benchmarks/.node/`` (ignored by git), run as a child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.context import Context

__all__ = ["PouchUnavailable", "ensure_installed", "replicate"]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pouchdb" / "replicate.js"
MANIFEST = HERE / "pouchdb" / "package.json"
PREFIX = HERE / ".node"


class PouchUnavailable(Exception):
    """Node or npm is missing, or the install failed; the message says what to do."""


def ensure_installed(ctx: Context) -> Path:
    """``benchmarks/.node/node_modules`` with the pinned packages (installing if needed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PouchUnavailable(
            "PouchDB baseline skipped: `node` and `npm` are needed on PATH "
            "(e.g. `apt-get install nodejs npm`); our figure is reported alone"
        )
    modules = PREFIX / "node_modules"
    wanted = MANIFEST.read_text(encoding="utf-8")
    installed = PREFIX / "package.json"
    if (
        (modules / "pouchdb").is_dir()
        and (modules / "pouchdb-adapter-memory").is_dir()
        and installed.exists()
        and installed.read_text(encoding="utf-8") == wanted
    ):
        return modules
    PREFIX.mkdir(parents=True, exist_ok=True)
    installed.write_text(wanted, encoding="utf-8")
    ctx.progress.note(f"installing pouchdb + pouchdb-adapter-memory into {PREFIX} (npm) ...")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PREFIX,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        installed.unlink(missing_ok=True)
        raise PouchUnavailable(
            f"PouchDB baseline skipped: `npm install` failed: {proc.stderr.strip()[-500:]}"
        )
    return modules


def replicate(ctx: Context, writes: int, batch_size: int, revisions: int = 1) -> dict[str, Any]:
    """Run one replication of ``writes`` writes (``writes // revisions`` documents, each
    written ``revisions`` times); returns the script's JSON report."""
    docs = writes // revisions
    modules = ensure_installed(ctx)
    env = {**os.environ, "NODE_PATH": str(modules)}
    proc = subprocess.run(
        ["node", str(SCRIPT), str(writes), str(batch_size), str(revisions)],
        capture_output=True,
        text=True,
        timeout=max(60.0, ctx.budget_s),
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise PouchUnavailable(f"the PouchDB script failed: {proc.stderr.strip()[-800:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["doc_count"] != docs:
        raise PouchUnavailable(f"PouchDB replicated {report['doc_count']} of {docs} documents")
    return report
