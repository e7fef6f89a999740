"""One scenario through both replica adapters (sync and async) on every store: push,
replay, gap, effect, server-authored ops, pull. The loop exists once
(:mod:`fynlo_sync.replica`); this is what keeps the adapters from diverging again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.effects import EffectContext, EffectHandler, EffectRow
from fynlo_sync.errors import SeqGapError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Change, Op
from fynlo_sync.plugins import (
    SERVER_NODE,
    Collection,
    CommandContext,
    DomainPlugin,
    Draft,
    Effect,
    Field,
    Registry,
)
from fynlo_sync.protocol import PullPage, PushResult, encode_batch
from fynlo_sync.replica import AsyncServerReplica, ServerReplica
from fynlo_sync.store.base import AsyncOverSync, ServerStore
from fynlo_sync.store.memory import MemoryServerStore
from fynlo_sync.store.sqlite import SqliteServerStore

NOW_MS = 1_767_000_000_000


def _stamp(ctx: CommandContext) -> dict[str, Any]:
    return {"at": ctx.received_ms}


class StampPlugin(DomainPlugin):
    """A command that records the server's receive time it was given; a stamp made by a
    terminal calls for an ``echo`` effect, whose handler stamps ``<id>-echo`` as the
    server (an effect's result reaching terminals as server-authored ops)."""

    name = "stamps"

    def effects(self, changes: list[Change]) -> list[Effect]:
        return [
            Effect.of(c, self.name, "echo", {"id": c.record.record_id})
            for c in changes
            if c.record.collection == "stamps" and c.node_id != SERVER_NODE
        ]

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"echo": self.echo}

    async def echo(self, ctx: EffectContext) -> None:
        record = await ctx.read("stamps", ctx.effect.payload["id"])
        assert record is not None and ctx.attempt == 1 and ctx.key.startswith("t/stamps.echo:")
        ctx.author.command("stamps", f"{record.record_id}-echo", "stamp")

    def collections(self) -> Iterable[Collection]:
        return (
            Collection(
                "stamps", {"at": Field("any", command_only=True)}, commands={"stamp": _stamp}
            ),
        )


class DecidePlugin(DomainPlugin):
    """A mark made by a terminal calls for a ``once`` effect that marks ``<id>-once`` as
    the server, decided under the tenant's lock (:meth:`OpAuthor.decide`): nothing when that
    record exists by then."""

    name = "marks"

    def effects(self, changes: list[Change]) -> list[Effect]:
        return [
            Effect.of(c, self.name, "once", {"id": c.record.record_id})
            for c in changes
            if c.record.collection == "marks" and c.node_id != SERVER_NODE
        ]

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"once": self.once}

    async def once(self, ctx: EffectContext) -> None:
        key = ("marks", f"{ctx.effect.payload['id']}-once")

        def build(found: Mapping[tuple[str, str], Any]) -> list[Draft]:
            return [] if key in found else [Draft.command("marks", key[1], "mark")]

        ctx.author.decide([key], build)

    def collections(self) -> Iterable[Collection]:
        return (
            Collection("marks", {"at": Field("any", command_only=True)}, commands={"mark": _stamp}),
        )


def _op(seq: int, name: str, args: dict[str, Any], record: str = "o1", coll: str = "orders") -> Op:
    return Op(
        op_id=f"n1-{seq}",
        node_id="n1",
        seq=seq,
        hlc=to_wire(pack(1_700_000_000_000 + seq, 0)),
        base_seq=0,
        collection=coll,
        record_id=record,
        kind="command",
        name=name,
        args=args,
    )


LINE = {"line_id": "l1", "item": "tea", "qty": 2, "unit_price": 250}


class Harness:
    """A replica of one adapter over one store, with calls made synchronous."""

    def __init__(
        self, mode: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        self.printed: list[Effect] = []
        self.registry: Registry = conflict.registry(
            [OrdersPlugin(ticket_printer=self.printed.append), StampPlugin(), DecidePlugin()]
        )
        self.loop = asyncio.new_event_loop()
        self._close: list[Callable[[], Any]] = [self.loop.close]
        now = lambda: NOW_MS  # noqa: E731
        if kind == "postgres":
            url: str = request.getfixturevalue("postgres_url")
            if mode == "sync":
                from fynlo_sync.store.postgres import BlockingPostgresStore

                blocking = BlockingPostgresStore(url)
                self._close.insert(0, blocking.close)
                self.sync_store: ServerStore = blocking
            else:
                from fynlo_sync.store.postgres import PostgresServerStore

                pg = self.loop.run_until_complete(PostgresServerStore.connect(url))
                self._close.insert(0, lambda: self.loop.run_until_complete(pg.close()))
                self.async_store: Any = pg
        else:
            store: ServerStore = (
                MemoryServerStore() if kind == "memory" else SqliteServerStore(tmp_path / "s.db")
            )
            self._close.insert(0, store.close)
            self.sync_store = store
            self.async_store = AsyncOverSync(store)
        if mode == "sync":
            self.replica: Any = ServerReplica(
                self.sync_store, self.registry, now_ms=now, inline_effects=False
            )
        else:
            self.replica = AsyncServerReplica(self.async_store, self.registry, now_ms=now)
        self.mode = mode

    def _do(self, value: Any) -> Any:
        return self.loop.run_until_complete(value) if self.mode == "async" else value

    def push(self, ops: list[Op]) -> PushResult:
        result: PushResult = self._do(self.replica.push("t", encode_batch(Batch.of("n1", ops))))
        return result

    def author(self, drafts: list[Draft]) -> PushResult:
        result: PushResult = self._do(self.replica.author("t", drafts))
        return result

    def pull(self, since: int, limit: int) -> PullPage:
        page: PullPage = self._do(self.replica.pull("t", since, limit))
        return page

    def run_effects(self) -> int:
        count: int = self._do(self.replica.run_effects())
        return count

    def outbox(self) -> list[EffectRow]:
        if self.mode == "sync":
            return self.sync_store.effect_rows("t")
        rows: list[EffectRow] = self._do(self.async_store.effect_rows("t"))
        return rows

    def close(self) -> None:
        for close in self._close:
            close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(str(request.param), kind, tmp_path, request)
    try:
        yield h
    finally:
        h.close()


def test_one_loop_push_replay_gap_effect_author_pull(harness: Harness) -> None:
    ops = [
        _op(1, "open", {"currency": "GBP", "table": "7"}),
        _op(2, "add_line", LINE),
        _op(3, "send_to_kitchen", {}),
        _op(4, "stamp", {}, record="s1", coll="stamps"),
    ]
    first = harness.push(ops)
    assert [o.status for o in first.outcomes] == ["applied"] * 4
    assert (first.high_water, first.cursor) == (4, 4)

    # Effects: written with the commit, performed by a drain, each once.
    assert [(r.key, r.state) for r in harness.outbox()] == [
        ("orders.kitchen_ticket:n1:3", "pending"),
        ("stamps.echo:n1:4", "pending"),
    ]
    assert harness.printed == []
    assert harness.run_effects() == 2
    assert [(e.name, e.payload["order_id"]) for e in harness.printed] == [("kitchen_ticket", "o1")]
    rows = harness.outbox()
    assert [(r.state, r.attempts, [a.result for a in r.history]) for r in rows] == [
        ("done", 1, ["done"]),
        ("done", 1, ["done"]),
    ]
    assert all(r.history[0].started_ms == NOW_MS for r in rows)

    # Replay: the first outcomes, nothing written, no second ticket.
    again = harness.push(ops)
    assert [o.status for o in again.outcomes] == ["duplicate"] * 4
    assert [o.original for o in again.outcomes] == ["applied"] * 4
    assert again.cursor == 5 and harness.run_effects() == 0 and len(harness.printed) == 1

    # Gap: refused whole, nothing written.
    with pytest.raises(SeqGapError) as gap:
        harness.push([_op(6, "serve", {})])
    assert gap.value.extra["expected"] == 5

    # Server-authored ops: node `server`, its own seqs (the echo took 1), the same feed.
    authored = harness.author([Draft.command("stamps", "s2", "stamp")])
    assert [o.status for o in authored.outcomes] == ["applied"]
    assert (authored.node_id, authored.high_water, authored.cursor) == (SERVER_NODE, 2, 6)

    # Pull: pages in feed order; the receive time reached the commands.
    page = harness.pull(0, 3)
    assert [c.seq for c in page.changes] == [1, 2, 3] and page.more
    rest = harness.pull(page.cursor, 10)
    assert [c.seq for c in rest.changes] == [4, 5, 6] and not rest.more
    assert [(c.node_id, c.node_seq, c.record.record_id) for c in rest.changes] == [
        ("n1", 4, "s1"),
        (SERVER_NODE, 1, "s1-echo"),
        (SERVER_NODE, 2, "s2"),
    ]
    assert [c.record.fields["at"] for c in rest.changes] == [NOW_MS] * 3
    order = page.changes[2].record
    assert order.fields["status"] == "sent" and order.fields["total"] == 500


def test_the_envelope_is_checked_once_per_push(monkeypatch: pytest.MonkeyPatch) -> None:
    import fynlo_sync.protocol
    import fynlo_sync.replica

    calls: list[str] = []
    real = fynlo_sync.protocol.check_batch

    def counting(batch: Batch, **kwargs: Any) -> None:
        calls.append(batch.node_id)
        real(batch, **kwargs)

    monkeypatch.setattr(fynlo_sync.protocol, "check_batch", counting)
    monkeypatch.setattr(fynlo_sync.replica, "check_batch", counting)
    replica = ServerReplica(MemoryServerStore(), conflict.registry([OrdersPlugin()]))
    replica.push("t", encode_batch(Batch.of("n1", [_op(1, "open", {"currency": "GBP"})])))
    assert calls == ["n1"]


def test_a_terminal_applies_commands_without_a_receive_time() -> None:
    from fynlo_sync.engine import apply_op

    registry = conflict.registry([StampPlugin()])
    applied = apply_op(None, _op(1, "stamp", {}, record="s1", coll="stamps"), registry)
    assert applied.record is not None and applied.record.fields["at"] is None


def test_an_effect_decides_under_the_lock_and_may_decide_nothing(harness: Harness) -> None:
    # m1-once already exists when the effect commits: it decides nothing, and is done.
    harness.author([Draft.command("marks", "m1-once", "mark")])
    pushed = harness.push(
        [
            _op(1, "mark", {}, record="m1", coll="marks"),
            _op(2, "mark", {}, record="m2", coll="marks"),
        ]
    )
    assert [o.status for o in pushed.outcomes] == ["applied"] * 2
    assert harness.run_effects() == 2
    assert [(r.state, r.attempts) for r in harness.outbox()] == [("done", 1), ("done", 1)]
    changes = harness.pull(0, 10).changes
    assert [(c.node_id, c.record.record_id) for c in changes] == [
        (SERVER_NODE, "m1-once"),
        ("n1", "m1"),
        ("n1", "m2"),
        (SERVER_NODE, "m2-once"),
    ]
