"""Layering you can trust: every module of ``fynlo_sync``, ``conflict`` and ``server`` has a
rank, and a module may import only modules of its own rank or lower. The pure core (ranks
0-6) imports no I/O at all. The checker is tested on a planted upward import (a synthetic
graph and a real module tree on disk), so its failure path is exercised on every run."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fynlo_sync", "conflict", "server")

#: Lowest first. The most specific (longest) prefix names a module's rank.
RANKS: dict[str, int] = {
    "fynlo_sync.errors": 0,
    "fynlo_sync.canonical": 1,
    "fynlo_sync.hlc": 1,
    "fynlo_sync.ops": 2,
    "fynlo_sync.limits": 2,  # pure: the size and shape limits (section 22)
    "fynlo_sync.protocol": 3,
    "fynlo_sync.pages": 4,  # pure: the cache of pull pages (section 23.7)
    "fynlo_sync.plugins": 4,
    "fynlo_sync.effects": 4,
    "fynlo_sync.domains": 5,
    "fynlo_sync.resolution": 5,
    "conflict": 5,
    "fynlo_sync.engine": 6,
    "fynlo_sync.schema": 6,  # pure: the registry's domains as one JSON document
    "fynlo_sync.plugin_loader": 7,  # imports plugins by name (FYNLO_PLUGINS)
    "fynlo_sync.domains.timeclock.report": 7,  # renders CSV and SVG (no I/O, not pure core)
    # ports
    "fynlo_sync.store.base": 7,
    "fynlo_sync.transport.base": 7,
    # adapters
    "fynlo_sync.replica": 8,
    "fynlo_sync.client": 8,
    "fynlo_sync.staff_terminal": 9,  # PIN sign-in on a terminal (imports argon2 lazily)
    "fynlo_sync.store": 9,
    "fynlo_sync.worker": 10,
    # payment providers: adapters to the outside world (HTTP), called from effects
    "fynlo_sync.domains.payments.providers": 10,
    "fynlo_sync.domains.payments.render": 10,  # CSV and SVG text of the payments reports
    "fynlo_sync.domains.payments.cli": 23,  # `fynlo report` reads the server's database
    "fynlo_sync.transport": 10,
    "fynlo_sync.testing": 11,
    "fynlo_sync": 11,  # the package's re-exports
    "fynlo_sync.__version__": 0,  # a constant in the package's __init__
    "fynlo_sync.cli": 12,  # wiring: finds command modules by name at run time
    "fynlo_sync.plugin_cli": 23,  # `fynlo check` runs against the server's database
    # the server
    "server.settings": 13,
    "server.sqlport": 14,
    "server.observe": 14,  # logs and metrics
    "server.openapi": 14,  # the OpenAPI document, completed
    "server.pgpokes": 14,  # pokes by LISTEN/NOTIFY (server.pokes picks it)
    "server.serving": 14,  # uvicorn options, security headers
    "server.accounts": 15,
    "server.shared_pages": 15,  # the page cache's tier shared through Redis
    "server.pokes": 15,
    "server.auth": 16,
    "server.backends": 17,
    "server.throttle": 17,  # rate limits, socket quota
    "server.conflicts": 18,
    "server.checks": 18,
    "server.staff": 21,  # the staff plugin's server module (PIN secrets, sign-in, admin)
    "server.timeclock": 21,  # the time clock plugin's routes (approvals, proposals)
    "server.permissions": 18,  # the actor check of a route acting for an employee
    "server.effects": 18,
    "server.admin": 19,
    "server.routes": 19,
    "server.plugins": 19,
    "server.payment_providers": 20,  # the providers plugin's routes (server.plugins loads it)
    "server.app": 20,
    "server": 21,
    "server.cli": 22,
    "server.staff_cli": 22,
    "server.testing": 22,
    # on top of everything: the simulator (its demo runs the real server)
    "fynlo_sync.sim": 23,
    # stand-ins for outside services, run as their own processes
    "fynlo_sync.sandbox": 23,
    "fynlo_sync.sandbox.ports": 12,  # a free port for a child process (server.testing too)
}
#: Package roots whose rank covers only their ``__init__``.
ROOTS = {"fynlo_sync", "server"}
#: Ranks at or below this are the pure core: standard library (no I/O) and msgspec only.
PURE_RANK = 6
PURE_ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "typing",
    "hashlib",
    "json",
    "msgspec",
    "re",
    "itertools",
    # the time clock's IP allow-list (protocol 20.7): parsing addresses and CIDR blocks is
    # pure computation, no I/O; hand-written parsing would be the riskier choice
    "ipaddress",
}


def rank_of(module: str, ranks: Mapping[str, int]) -> int | None:
    """The rank of the longest ranked prefix; a package root (``fynlo_sync``, ``server``)
    ranks only its own ``__init__``, so a new module must be given a rank."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in ROOTS and end < len(parts):
            return None
        found = ranks.get(prefix)
        if found is not None:
            return found
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports (anywhere in the file, relative ones resolved)."""
    found: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package[: len(package) - node.level + 1]
                base = ".".join([*prefix, base] if base else prefix)
            if base in ROOTS:
                # `from fynlo_sync import __version__` names a constant, not the facade
                found.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.add(base)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(path, root)
            graph[name] = imports_of(path, name)
    return graph


def violations(
    graph: Mapping[str, set[str]],
    ranks: Mapping[str, int],
    packages: tuple[str, ...] = PACKAGES,
    pure_rank: int = PURE_RANK,
) -> list[str]:
    """Every unranked module, upward import, and I/O import of the pure core."""
    problems: list[str] = []
    for module in sorted(graph):
        mine = rank_of(module, ranks)
        if mine is None:
            problems.append(f"{module} has no rank: add it to RANKS")
            continue
        for target in sorted(graph[module]):
            if target.split(".")[0] not in packages:
                if mine <= pure_rank and target.split(".")[0] not in PURE_ALLOWED:
                    problems.append(f"{module} (pure, rank {mine}) imports {target}")
                continue
            theirs = rank_of(target, ranks)
            if theirs is None:
                problems.append(f"{module} imports {target}, which has no rank")
            elif theirs > mine:
                problems.append(f"{module} (rank {mine}) imports {target} (rank {theirs})")
    return problems


def test_no_module_imports_upward() -> None:
    assert violations(import_graph(ROOT), RANKS) == []


def test_an_upward_import_in_a_synthetic_graph_is_caught() -> None:
    graph = {
        "fynlo_sync.protocol": {"fynlo_sync.ops", "fynlo_sync.engine"},  # the old mistake
        "fynlo_sync.engine": {"fynlo_sync.protocol"},
        "fynlo_sync.ops": {"msgspec"},
        "fynlo_sync.mystery": set(),
    }
    assert violations(graph, RANKS) == [
        "fynlo_sync.mystery has no rank: add it to RANKS",
        "fynlo_sync.protocol (rank 3) imports fynlo_sync.engine (rank 6)",
    ]


def test_a_planted_upward_import_on_disk_is_caught(tmp_path: Path) -> None:
    pkg = tmp_path / "fynlo_sync"
    (pkg / "store").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ops.py").write_text("import msgspec\n")
    (pkg / "store" / "__init__.py").write_text("")
    (pkg / "store" / "base.py").write_text("from fynlo_sync.ops import Op\n")
    (pkg / "engine.py").write_text(
        "def late():\n    from .store import base  # planted: the engine reaches a port\n"
    )
    (pkg / "plugins.py").write_text("import sqlite3\n")  # planted: I/O in the pure core
    graph = import_graph(tmp_path, ("fynlo_sync",))
    assert graph["fynlo_sync.engine"] == {"fynlo_sync.store"}
    assert violations(graph, RANKS, ("fynlo_sync",)) == [
        "fynlo_sync.engine (rank 6) imports fynlo_sync.store (rank 9)",
        "fynlo_sync.plugins (pure, rank 4) imports sqlite3",
    ]


@pytest.mark.parametrize(
    ("module", "rank"),
    [("fynlo_sync.store.sqlite", 9), ("fynlo_sync.store.base", 7), ("server.routes", 19)],
)
def test_the_most_specific_prefix_ranks_a_module(module: str, rank: int) -> None:
    assert rank_of(module, RANKS) == rank
