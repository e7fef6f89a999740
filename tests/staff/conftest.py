"""Fixtures for staff and the time clock: a registry with both plugins, a server replica
with an owner and employees, terminals on a loopback link."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import conflict
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.staff import StaffPlugin
from fynlo_sync.domains.timeclock import TimeclockPlugin, timecard_id
from fynlo_sync.domains.timeclock.rules import HOUR_MS
from fynlo_sync.plugins import Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport

#: Monday 30 November 2026, 04:00 UTC: the workweek's start (cutoff 04:00, UTC).
WEEK = "2026-11-30"
WEEK_START = 1_795_996_800_000 + 4 * HOUR_MS


def make_registry() -> Registry:
    return conflict.registry([OrdersPlugin(), StaffPlugin(), TimeclockPlugin()])


def card_args(employee: str, rules: str = "us-ca", **extra: Any) -> dict[str, Any]:
    return {
        "employee_id": employee,
        "week": WEEK,
        "week_start_ms": WEEK_START,
        "rules": rules,
        "rounding": None,
        **extra,
    }


def card(employee: str) -> str:
    return timecard_id(employee, WEEK)


def at(day: int, hours: float) -> int:
    """Device time: ``hours`` after the cutoff of workday ``day`` (0 = Monday)."""
    return WEEK_START + day * 24 * HOUR_MS + round(hours * HOUR_MS)


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=WEEK_START, tick_ms=1)


@pytest.fixture
def server_clock() -> ManualClock:
    """The server's clock (its receive time): the end of the test week, so no punch of the
    week is ahead of it (punches then count as made offline)."""
    return ManualClock(start_ms=WEEK_START + 8 * 24 * HOUR_MS)


@pytest.fixture
def server(registry: Registry, server_clock: ManualClock) -> ServerReplica:
    return ServerReplica(MemoryServerStore(), registry, now_ms=server_clock)


TerminalFactory = Callable[..., Terminal]


@pytest.fixture
def make_terminal(
    tmp_path: Path, registry: Registry, server: ServerReplica, clock: ManualClock
) -> TerminalFactory:
    def make(node_id: str, *, tenant: str = "t1") -> Terminal:
        store = SqliteTerminalStore(tmp_path / f"{tenant}-{node_id}.db", node_id)
        return Terminal(
            store,
            registry,
            LoopbackTransport(server, tenant, node_id),
            wall=clock,
            rng=random.Random(node_id),
        )

    return make


def as_server(
    server: ServerReplica,
    collection: str,
    record_id: str,
    name: str,
    args: dict[str, Any],
    *,
    tenant: str = "t1",
) -> str:
    """Run one command as the server's own node (no actor needed); its outcome status."""
    from fynlo_sync.hlc import pack, to_wire
    from fynlo_sync.ops import Batch, Op

    seq = server.store.high_water(tenant, "server") + 1
    op = Op(
        op_id=f"server-{seq}",
        node_id="server",
        seq=seq,
        hlc=to_wire(pack(WEEK_START + seq, 0)),
        base_seq=server.store.cursor(tenant),
        collection=collection,
        record_id=record_id,
        kind="command",
        name=name,
        args=args,
    )
    result = server.push(tenant, Batch.of("server", [op]))
    return result.outcomes[0].status


@pytest.fixture
def staffed(server: ServerReplica) -> ServerReplica:
    """A tenant with an owner (o1), a manager (m1) and two staff (s1, s2)."""
    for employee, role in (("o1", "owner"), ("m1", "manager"), ("s1", "staff"), ("s2", "staff")):
        status = as_server(
            server,
            "employees",
            employee,
            "add",
            {"name": employee.upper(), "role": role, "wage_per_hour": 1500, "currency": "USD"},
        )
        assert status == "applied"
    return server
