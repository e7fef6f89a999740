"""The public surface is small and pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import fynlo_sync

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_exports_are_pinned() -> None:
    assert sorted(fynlo_sync.__all__) == sorted(
        [
            "PROTOCOL_VERSION",
            "Backoff",
            "Batch",
            "CallerError",
            "Change",
            "Collection",
            "Conflict",
            "DomainPlugin",
            "Field",
            "FynloError",
            "HybridClock",
            "Op",
            "Outcome",
            "PeerError",
            "Plan",
            "PullPage",
            "PushResult",
            "Record",
            "Registry",
            "ServerReplica",
            "Stamp",
            "StoreError",
            "SyncReport",
            "Terminal",
            "TransportError",
            "apply_op",
            "canonical_bytes",
            "checksum",
            "plan_push",
            "rebase",
            "__version__",
        ]
    )
    for name in fynlo_sync.__all__:
        assert hasattr(fynlo_sync, name), name


def public_modules() -> list[str]:
    names = []
    for package in ("fynlo_sync", "conflict"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if any(p.startswith("_") and p != "__init__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


@pytest.mark.parametrize("module", public_modules())
def test_every_public_module_declares_all(module: str) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # an optional extra (postgres, server) is not installed
        pytest.skip(f"{module}: {exc}")
    assert hasattr(mod, "__all__"), f"{module} has no __all__"
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
