"""Reading and writing the protocol test vectors (``docs/protocol/vectors/*.json``).

The vectors are language-neutral JSON. This module turns their collection schemas into
our :class:`~fynlo_sync.plugins.Collection` objects, writes vector files in a stable,
readable layout, and strips the members that are informative only (``detail``, ``title``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import PROBLEM_BASE
from fynlo_sync.limits import Limits
from fynlo_sync.plugins import Collection, DomainPlugin, Field, Registry
from fynlo_sync.schema import collection_schema

__all__ = [
    "VECTOR_DIR",
    "VECTOR_FILES",
    "DOCUMENT_FILES",
    "RawJSON",
    "collection_from_json",
    "collection_to_json",
    "dumps",
    "load",
    "normative",
    "registry_for",
]

VECTOR_DIR = Path(__file__).resolve().parents[2] / "docs" / "protocol" / "vectors"
VECTOR_FILES = (
    "canonical.json",
    "checksum.json",
    "hlc.json",
    "conflicts.json",
    "orders_state.json",
    "push.json",
    "timeclock_state.json",
    "overtime.json",
    "timeclock_fraud.json",
    "compact.json",
    "payments_state.json",
    "fees.json",
    "payments_delete.json",
    "drawers.json",
    "session_capture.json",
    "session_refund.json",
    "ledger.json",
    "actors.json",
)
#: Files that hold one document, not an array of named vectors.
DOCUMENT_FILES = ("domains.json",)

#: Members that carry text for people; vectors leave them out and ports must not rely on them.
INFORMATIVE = frozenset({"detail", "title"})


class RawJSON:
    """A JSON number written exactly as given (``1.0``, ``1e400``, ``-0``): the lexical
    form matters to the canonical-form vectors and cannot survive a Python float."""

    def __init__(self, text: str) -> None:
        self.text = text


def load(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTOR_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def dumps(value: Any, indent: int = 0, width: int = 96) -> str:
    """Stable JSON: ASCII only (lone surrogates survive), short containers on one line."""
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, dict | list) and value:
        flat = _flat(value)
        if flat is not None and indent * 2 + len(flat) <= width:
            return flat
        pad = "  " * (indent + 1)
        if isinstance(value, dict):
            items = [
                f"{pad}{json.dumps(k)}: {dumps(v, indent + 1, width)}" for k, v in value.items()
            ]
            return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
        items = [pad + dumps(v, indent + 1, width) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)


def _flat(value: Any) -> str | None:
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            inner = _flat(v)
            if inner is None:
                return None
            parts.append(f"{json.dumps(k)}: {inner}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        items = [_flat(v) for v in value]
        if any(i is None for i in items):
            return None
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    return json.dumps(value)


def normative(response: Any) -> Any:
    """A push.json response without its informative members: ``title`` and ``detail`` of a
    problem body, ``detail`` of each outcome. (Only there: a record may well have a field
    called ``title``.)"""
    if not isinstance(response, dict):
        return response
    out = dict(response)
    if "problem" in out:
        problem = {k: v for k, v in out["problem"].items() if k not in INFORMATIVE}
        if problem.get("type") == PROBLEM_BASE + "malformed":
            # Its extension members are diagnostics (docs/protocol.md section 16): which one
            # appears depends on where the problem was found, so vectors leave them out.
            problem = {k: problem[k] for k in ("type", "status")}
        out["problem"] = problem
    body = out.get("body")
    if isinstance(body, dict) and "outcomes" in body:
        out["body"] = dict(
            body, outcomes=[{k: v for k, v in o.items() if k != "detail"} for o in body["outcomes"]]
        )
    return out


def collection_to_json(collection: Collection) -> dict[str, Any]:
    return collection_schema(collection)


def collection_from_json(data: Mapping[str, Any]) -> Collection:
    return Collection(
        name=data["name"],
        fields={
            name: Field(
                type=spec["type"],
                kind=spec["kind"],
                required=spec["required"],
                command_only=spec["command_only"],
            )
            for name, spec in data["fields"].items()
        },
        strategy=data["strategy"],
        field_strategies=dict(data["field_strategies"]),
        states=tuple(data["states"]),
        strict=data["strict"],
    )


class _SchemaPlugin(DomainPlugin):
    name = "vectors"

    def __init__(self, collections: Iterable[Collection]) -> None:
        self._collections = tuple(collections)

    def collections(self) -> Iterable[Collection]:
        return self._collections


def registry_for(schemas: Iterable[Mapping[str, Any]] = (), *, orders: bool = False) -> Registry:
    """The built-in strategies, the collections the vector describes, and (when asked) the
    orders plugin, whose schema the spec defines."""
    plugins: list[DomainPlugin] = [_SchemaPlugin(collection_from_json(s) for s in schemas)]
    if orders:
        plugins.append(OrdersPlugin())
    return conflict.registry(plugins)


def _wall_ms() -> int:
    """The real clock: push vectors bound HLCs as the real server does (their ops are
    stamped in 2023, far in the past, except the one far in the future)."""
    import time

    return time.time_ns() // 1_000_000


def run_push_vector(vector: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Drive a push.json sequence through a fresh ServerReplica over a MemoryServerStore,
    bodies as bytes, and return one response per step in the vectors' shape."""
    import msgspec

    from fynlo_sync.errors import PeerError
    from fynlo_sync.replica import ServerReplica
    from fynlo_sync.store import MemoryServerStore

    replica = ServerReplica(
        MemoryServerStore(),
        registry_for(vector["collections"]),
        max_batch=vector.get("max_batch", 1000),
        limits=Limits(**vector.get("limits", {})),
        now_ms=_wall_ms,
        max_skew_ms=300_000,
    )
    responses: list[dict[str, Any]] = []
    for step in vector["steps"]:
        try:
            if "push" in step:
                push = step["push"]
                body = (
                    push["body_text"].encode("utf-8")
                    if "body_text" in push
                    else json.dumps(push["body"]).encode("utf-8")
                )
                answer: Any = replica.push("t1", body, node_id=push["node_id"])
            else:
                pull = step["pull"]
                answer = replica.pull(
                    "t1",
                    pull["cursor"],
                    pull["limit"],
                    compact=pull.get("compact", False),
                    node_id=pull.get("node_id"),
                )
        except PeerError as exc:
            responses.append({"status": exc.status, "problem": exc.problem()})
            continue
        responses.append({"status": 200, "body": msgspec.to_builtins(answer)})
    return responses
