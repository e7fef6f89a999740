"""Fixtures for the core tests: a registry, a manual clock, terminals on a loopback."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Op
from fynlo_sync.plugins import Collection, DomainPlugin, Field, Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

NOTE_FIELDS = {
    "title": Field("str"),
    "body": Field("str"),
    "likes": Field("int", kind="counter"),
    "tags": Field("list", kind="set"),
    "status": Field("str", kind="state"),
    "meta": Field("object", kind="map"),
    "price": Field("money"),
}
NOTE_STATES = ("draft", "review", "published")


def notes(name: str, strategy: str) -> Collection:
    return Collection(name=name, fields=NOTE_FIELDS, strategy=strategy, states=NOTE_STATES)


class NotesPlugin(DomainPlugin):
    """A test domain: the same schema under each built-in strategy."""

    name = "notes"

    def collections(self) -> Iterable[Collection]:
        return (
            notes("notes", "smart_merge"),
            notes("notes_server", "server_wins"),
            notes("notes_client", "client_wins"),
            notes("notes_manual", "manual"),
        )


def make_registry() -> Registry:
    return conflict.registry([OrdersPlugin(), NotesPlugin()])


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(tick_ms=1)


@pytest.fixture
def server(registry: Registry) -> ServerReplica:
    return ServerReplica(MemoryServerStore(), registry)


TerminalFactory = Callable[..., Terminal]


@pytest.fixture
def make_terminal(
    tmp_path: Path, registry: Registry, server: ServerReplica, clock: ManualClock
) -> TerminalFactory:
    def make(node_id: str, *, tenant: str = "t1", seed: int = 0, **kwargs: Any) -> Terminal:
        store = SqliteTerminalStore(tmp_path / f"{tenant}-{node_id}.db", node_id)
        return Terminal(
            store,
            registry,
            LoopbackTransport(server, tenant, node_id),
            wall=clock,
            rng=random.Random(seed or node_id),
            **kwargs,
        )

    return make


def mkop(
    seq: int,
    kind: str = "patch",
    *,
    node: str = "n1",
    hlc: int | None = None,
    base: int = 0,
    collection: str = "notes",
    record: str = "r1",
    fields: dict[str, object] | None = None,
    name: str | None = None,
    args: dict[str, object] | None = None,
) -> Op:
    """An op with sensible defaults: HLC grows with seq unless given."""
    return Op(
        op_id=f"{node}-{seq}",
        node_id=node,
        seq=seq,
        hlc=to_wire(pack(1_700_000_000_000 + (seq if hlc is None else hlc), 0)),
        base_seq=base,
        collection=collection,
        record_id=record,
        kind=kind,  # type: ignore[arg-type]
        fields=fields if kind in ("put", "patch") else None,
        name=name,
        args=args if kind == "command" else None,
    )
