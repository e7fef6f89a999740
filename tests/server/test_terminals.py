"""Terminals (fynlo_sync.client.Terminal with the HTTP transport) converging through a real
uvicorn server over real sockets, on embedded SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.errors import RejectedOpError, TransportError
from fynlo_sync.ops import Batch, Record
from fynlo_sync.protocol import PushResult
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from tests.server.conftest import Live

COLLECTIONS = ("notes", "notes_server", "notes_client")


def _random_write(terminal: Terminal, rng: random.Random, orders: list[str]) -> None:
    roll = rng.random()
    try:
        if roll < 0.3:
            order = rng.choice(orders)
            if terminal.get("orders", order) is None:
                terminal.command("orders", order, "open", {"currency": "GBP"})
            else:
                line = {
                    "line_id": f"l{rng.randrange(6)}",
                    "item": rng.choice(["tea", "cake", "soup"]),
                    "qty": rng.randint(1, 3),
                    "unit_price": rng.choice([250, 395, 1200]),
                }
                terminal.command("orders", order, "add_line", line)
            return
        collection = rng.choice(COLLECTIONS)
        record = f"r{rng.randrange(4)}"
        if terminal.get(collection, record) is None:
            terminal.put(collection, record, {"title": f"t{rng.randrange(100)}", "likes": 0})
        elif roll < 0.85:
            terminal.patch(
                collection,
                record,
                {"title": f"t{rng.randrange(100)}", "likes": rng.randint(1, 3)},
            )
        else:
            terminal.delete(collection, record)
    except RejectedOpError:
        pass  # refused locally by the same rules the server runs: nothing was queued


def _state(terminal: Terminal) -> list[Record]:
    return terminal.store.records()


def test_terminals_converge_over_http(live: Live, tmp_path: Path) -> None:
    tenant = live.tenant()
    clock = ManualClock(tick_ms=1)
    terminals = [live.terminal(tenant, tmp_path, clock, seed) for seed in (11, 12, 13)]
    rng = random.Random(2024)
    orders = ["o1", "o2"]
    for _ in range(6):
        for terminal in terminals:
            for _ in range(rng.randint(0, 6)):
                _random_write(terminal, rng, orders)
        for terminal in rng.sample(terminals, k=len(terminals)):
            if rng.random() < 0.8:  # some stay offline this round
                terminal.sync()
    for _ in range(2):
        for terminal in terminals:
            terminal.sync()
    states = [_state(t) for t in terminals]
    assert all(not t.pending() for t in terminals)
    assert states[0] == states[1] == states[2]
    assert len(states[0]) >= 4
    # Every terminal agrees with a fresh pull of the whole feed from the server.
    fresh = live.terminal(tenant, tmp_path, clock, 99)
    fresh.sync()
    assert _state(fresh) == states[0]
    for order in orders:
        record = fresh.get("orders", order)
        if record is not None:
            lines = record.fields["lines"].values()
            assert record.fields["total"] == sum(x["qty"] * x["unit_price"] for x in lines)


def test_a_pipelined_push_over_http_commits_every_op_once_in_order(
    live: Live, tmp_path: Path
) -> None:
    """Over the real HTTP transport (``pipelined``) a terminal's many batches are committed
    each once, in seq order; a push interrupted by a closed connection resumes after the
    last acknowledged batch and the feed still holds every op once."""
    tenant = live.tenant()
    clock = ManualClock(tick_ms=1)
    writer = live.terminal(tenant, tmp_path, clock, 31)  # batches of 7
    assert getattr(writer.transport, "pipelined", False) is True
    writer.command("orders", "o1", "open", {"currency": "GBP"})
    for i in range(40):
        line = {"line_id": f"l{i}", "item": "tea", "qty": 1, "unit_price": 250}
        writer.command("orders", "o1", "add_line", line)
    link = writer.transport
    assert isinstance(link, HttpTransport)
    real_push = link.push
    calls: list[int] = []

    def push_then_fail_the_fourth(batch: Batch) -> PushResult:
        calls.append(batch.ops[0].seq)
        if len(calls) == 4:
            raise TransportError("connection reset by peer")
        return real_push(batch)

    link.push = push_then_fail_the_fourth  # type: ignore[method-assign]
    with pytest.raises(TransportError):
        writer.push()
    assert writer.store.meta().acked_seq == 21  # three batches of 7 answered and kept
    link.push = real_push  # type: ignore[method-assign]
    assert writer.push() == 20
    assert calls == [1, 8, 15, 22]
    feed = link.pull(0, 1000).changes
    assert [c.node_seq for c in feed if c.node_id == link.node_id] == list(range(1, 42))
    assert writer.pending() == [] and writer.store.meta().acked_seq == 41
    order = writer.get("orders", "o1")
    assert order is not None and order.fields["total"] == 40 * 250
