"""Test helpers for users of fynlo-sync: a manual wall clock and hypothesis strategies.

``ManualClock`` is a real clock whose time only moves when told to, for tests and
simulations that must replay exactly. The hypothesis strategies generate the float-free
JSON the protocol accepts, so a plugin author can property-test their own schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.effects import Effect, Settlement
from fynlo_sync.engine import Plan, plan_push
from fynlo_sync.errors import CallerError, SeqGapError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op, Outcome, Record, Stamp
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import encode_batch, record_bytes
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store.base import ServerStore, TerminalMeta, TerminalStore

__all__ = ["SERVER_STORE_CHECKS", "TERMINAL_STORE_CHECKS", "ManualClock", "json_values"]


class ManualClock:
    """Wall-clock milliseconds that move only by :meth:`advance` or :meth:`set`.

    Call the instance to read it (it is a ``Callable[[], int]``, the shape every fynlo
    clock takes). ``tick_ms`` moves time forward on every read, so code that polls the
    clock in a loop still sees time pass.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000, tick_ms: int = 0) -> None:
        if start_ms < 0 or tick_ms < 0:
            raise CallerError("a manual clock starts at >= 0 and ticks by >= 0")
        self._now = start_ms
        self.tick_ms = tick_ms

    def __call__(self) -> int:
        now = self._now
        self._now += self.tick_ms
        return now

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise CallerError("advance() moves forward; use set() to jump back")
        self._now += ms

    def set(self, ms: int) -> None:
        """Jump to ``ms`` (backwards too: a wall clock that an NTP sync corrects)."""
        if ms < 0:
            raise CallerError("a wall clock reading is >= 0")
        self._now = ms


def json_values(max_leaves: int = 20) -> Any:
    """A hypothesis strategy for float-free JSON values (needs the ``dev`` extra)."""
    from hypothesis import strategies as st

    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
        | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6),
                children,
                max_size=4,
            )
        ),
        max_leaves=max_leaves,
    )


# --------------------------------------------------------------------------- conformance
#
# One suite for every store. Each check takes a fresh, empty store and raises
# AssertionError (or the store's own error) on failure. Run them from a test with your
# own factory:
#
#     @pytest.mark.parametrize("check", SERVER_STORE_CHECKS, ids=lambda c: c.__name__)
#     def test_my_store(check):
#         check(MyServerStore(...))


class _Boom(Exception):
    pass


def _registry() -> Registry:
    from conflict import registry
    from fynlo_sync.domains.orders import OrdersPlugin

    return registry([OrdersPlugin()])


def _op(node: str, seq: int, kind: str = "command", **parts: Any) -> Op:
    defaults: dict[str, Any] = {"collection": "orders", "record_id": "o1"}
    if kind == "command":
        defaults |= {"name": "add_line", "args": {}}
    defaults |= parts
    return Op(
        op_id=f"{node}-{seq}",
        node_id=node,
        seq=seq,
        hlc=to_wire(pack(1_700_000_000_000 + seq, 0)),
        base_seq=0,
        kind=kind,  # type: ignore[arg-type]
        **defaults,
    )


def _orders_batch(node: str, first: int, count: int, record: str = "o1") -> Batch:
    ops = []
    for seq in range(first, first + count):
        if seq == 1:
            ops.append(_op(node, seq, record_id=record, name="open", args={"currency": "GBP"}))
        else:
            line = {"line_id": f"{node}-{seq}", "item": "tea", "qty": 1, "unit_price": 250}
            ops.append(_op(node, seq, record_id=record, args=line))
    return Batch.of(node, ops)


def check_server_empty(store: ServerStore) -> None:
    assert store.cursor("t") == 0
    assert store.high_water("t", "n1") == 0
    assert store.changes("t", 0, 10) == []
    assert store.records("t") == []
    assert store.high_waters("t") == {}
    assert store.op_log("t", "n1") == []


def check_server_push_and_pull(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    result = replica.push("t", encode_batch(_orders_batch("n1", 1, 3)))
    assert [o.status for o in result.outcomes] == ["applied"] * 3
    assert (result.high_water, result.cursor) == (3, 3)
    assert store.cursor("t") == 3 and store.high_water("t", "n1") == 3
    (order,) = store.records("t", "orders")
    assert order.fields["total"] == 500 and order.version == 3
    page = replica.pull("t", 0, 2)
    assert [c.seq for c in page.changes] == [1, 2] and page.more and page.cursor == 2
    rest = replica.pull("t", page.cursor, 2)
    assert [c.seq for c in rest.changes] == [3] and not rest.more
    assert rest.changes[0].record == order
    assert replica.pull("t", 3, 2).changes == []
    assert [o.seq for o in store.op_log("t", "n1")] == [1, 2, 3]


def check_server_replay_is_idempotent(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    body = encode_batch(_orders_batch("n1", 1, 3))
    first = replica.push("t", body)
    before = (store.records("t"), store.changes("t", 0, 100), store.cursor("t"))
    again = replica.push("t", body)
    assert [o.status for o in again.outcomes] == ["duplicate"] * 3
    assert [o.original for o in again.outcomes] == [o.status for o in first.outcomes]
    assert (store.records("t"), store.changes("t", 0, 100), store.cursor("t")) == before


def check_server_gap_writes_nothing(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    replica.push("t", encode_batch(_orders_batch("n1", 1, 2)))
    try:
        replica.push("t", encode_batch(_orders_batch("n1", 4, 1)))
    except SeqGapError as exc:
        assert exc.extra["expected"] == 3
    else:
        raise AssertionError("a gap was accepted")
    assert store.high_water("t", "n1") == 2 and store.cursor("t") == 2


def check_server_transaction_is_atomic(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    replica.push("t", encode_batch(_orders_batch("n1", 1, 1)))
    batch = _orders_batch("n1", 2, 2)
    try:
        with store.transaction("t"):
            plan = plan_push(
                batch,
                high_water=1,
                prior={},
                rows=store.load("t", [("orders", "o1")]),
                registry=replica.registry,
                cursor=store.cursor("t"),
            )
            store.commit("t", plan)
            raise _Boom
    except _Boom:
        pass
    assert store.cursor("t") == 1 and store.high_water("t", "n1") == 1
    assert store.records("t", "orders")[0].fields["lines"] == {}
    assert [o.seq for o in store.op_log("t", "n1")] == [1]


def check_server_tenants_are_isolated(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    replica.push("a", encode_batch(_orders_batch("n1", 1, 2)))
    assert store.records("b") == [] and store.changes("b", 0, 10) == []
    assert store.high_water("b", "n1") == 0 and store.cursor("b") == 0
    # the same node id and seqs in another tenant are a separate log
    result = replica.push("b", encode_batch(_orders_batch("n1", 1, 1, record="o2")))
    assert result.outcomes[0].status == "applied" and result.cursor == 1
    assert [r.record_id for r in store.records("a")] == ["o1"]
    assert [r.record_id for r in store.records("b")] == ["o2"]
    assert store.load("b", [("orders", "o1")]) == {}


def check_server_lists_in_byte_order(store: ServerStore) -> None:
    """Records and nodes list in the order of their ids' code points (what SQLite's binary
    collation gives and Python's ``sorted``), whatever the database's own collation: a
    linguistic one (ICU ``en-US``) would put ``a`` before ``B`` and ignore the hyphen."""
    replica = ServerReplica(store, _registry())
    ids = ["ab", "B", "a-b", "a", "_z"]
    for n, record in enumerate(ids):
        node = ["n-1", "N2", "n1", "m", "n_3"][n]
        replica.push("t", encode_batch(_orders_batch(node, 1, 1, record=record)))
    assert [r.record_id for r in store.records("t", "orders")] == sorted(ids)
    assert [r.record_id for r in store.records("t")] == sorted(ids)
    assert list(store.high_waters("t")) == sorted(["n-1", "N2", "n1", "m", "n_3"])


def check_server_rejections_and_conflicts_are_kept(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    batch = Batch.of(
        "n1",
        [
            _op("n1", 1, name="serve", args={}),  # the order does not exist yet
            _op("n1", 2, name="open", args={"currency": "GBP"}),
        ],
    )
    result = replica.push("t", encode_batch(batch))
    assert [o.status for o in result.outcomes] == ["rejected", "applied"]
    assert result.outcomes[0].reason == "illegal-transition"
    log = store.op_log("t", "n1")
    assert [(o.seq, o.status) for o in log] == [(1, "rejected"), (2, "applied")]
    prior = store.prior_outcomes("t", "n1", [1, 2])
    assert prior[1].reason == "illegal-transition" and prior[2].status == "applied"
    assert store.high_waters("t") == {"n1": 2}


def check_server_loads_many_keys(store: ServerStore) -> None:
    replica = ServerReplica(store, _registry())
    ops = [
        _op("n1", i + 1, record_id=f"o{i}", name="open", args={"currency": "EUR"})
        for i in range(450)
    ]
    replica.push("t", encode_batch(Batch.of("n1", ops)))
    keys = [("orders", f"o{i}") for i in range(0, 450, 7)] + [("orders", "missing")]
    loaded = store.load("t", keys)
    assert sorted(loaded) == sorted(keys[:-1])


def check_server_latest_is_compacted(store: ServerStore) -> None:
    """``latest``: each changed record once, at the feed entry of its current state,
    ascending by version; tombstones stay; other tenants never appear."""
    replica = ServerReplica(store, _registry())
    replica.push("t", encode_batch(_orders_batch("n1", 1, 3)))  # o1: seqs 1..3
    replica.push("t", encode_batch(_orders_batch("n2", 1, 2, record="o2")))  # o2: 4..5
    replica.push("u", encode_batch(_orders_batch("n1", 1, 1, record="elsewhere")))
    void = _op("n1", 4, name="void", args={"reason": "test"})
    delete = _op("n1", 5, kind="delete")
    replica.push("t", encode_batch(Batch.of("n1", [void, delete])))  # o1: 6 (void), 7 (gone)
    latest = store.latest("t", 0, 10)
    assert [(c.seq, c.record.record_id) for c in latest] == [(5, "o2"), (7, "o1")]
    assert latest == [store.changes("t", 4, 1)[0], store.changes("t", 6, 1)[0]]
    assert latest[1].record.deleted and latest[1].node_seq == 5 and latest[1].op_id == "n1-5"
    assert store.latest("t", 0, 1) == latest[:1]
    assert store.latest("t", 5, 10) == latest[1:]
    assert store.latest("t", 7, 10) == [] and store.latest("nobody", 0, 10) == []
    page = replica.pull("t", 0, 1, compact=True, node_id="n1")
    assert page.compacted and page.high_water == 5 and page.more and page.cursor == 5
    last = replica.pull("t", 5, 1, compact=True, node_id="n2")
    assert last.high_water == 2 and not last.more and last.changes == latest[1:]


def check_terminal_meta_and_rows(store: TerminalStore) -> None:
    meta = store.meta()
    assert (meta.next_seq, meta.cursor, meta.acked_seq, meta.hlc) == (1, 0, 0, 0)
    store.set_meta(TerminalMeta(meta.node_id, 5, 7, 3, 2**60))
    assert store.meta() == TerminalMeta(meta.node_id, 5, 7, 3, 2**60)
    a = Record("orders", "b", {"x": 1}, {})
    b = Record("orders", "a", {"x": 2}, {})
    c = Record("notes", "z", {}, {})
    store.put([a, b, c])
    assert store.get(("orders", "b")) == a
    assert [r.record_id for r in store.records()] == ["z", "a", "b"]
    assert [r.record_id for r in store.records("orders")] == ["a", "b"]
    assert store.get_server(("orders", "b")) is None
    store.put_server([a])
    assert store.server_records() == [a]
    store.forget(("orders", "b"))
    store.forget(("orders", "never"))
    assert [r.record_id for r in store.records()] == ["z", "a"]
    assert store.server_records() == [a]


def check_terminal_outbox(store: TerminalStore) -> None:
    node = store.meta().node_id
    ops = [_op(node, s, record_id="o1" if s % 2 else "o2") for s in range(1, 6)]
    for op in ops:
        store.append_outbox(op)
    assert store.outbox() == ops
    assert store.outbox(2, 2) == ops[2:4]
    assert store.outbox_for(("orders", "o2")) == [ops[1], ops[3]]
    store.ack(3, cursor=10)
    store.ack(5, cursor=14)
    store.ack(4, cursor=12)  # seen in the feed earlier than the push said: the lower wins
    store.ack(4, cursor=13)
    assert store.trim(9) == []
    assert store.trim(10) == ops[:3]
    assert store.outbox() == ops[3:]
    assert store.trim(12) == ops[3:4]
    assert store.trim(14) == ops[4:]
    assert store.outbox() == []


def check_terminal_transaction_rolls_back(store: TerminalStore) -> None:
    node = store.meta().node_id
    record = Record("orders", "o1", {"x": 1}, {})
    try:
        with store.transaction():
            store.put([record])
            with store.transaction():  # nested blocks join the outer transaction
                store.append_outbox(_op(node, 1))
                store.set_meta(TerminalMeta(node, 2))
            raise _Boom
    except _Boom:
        pass
    assert store.get(record.key) is None and store.outbox() == []
    assert store.meta().next_seq == 1
    with store.transaction():
        store.put([record])
    assert store.get(record.key) == record


def check_terminal_outcomes(store: TerminalStore) -> None:
    outcomes = [
        Outcome("a", 2, "rejected", reason="illegal-transition", detail="no"),
        Outcome("b", 1, "conflict", conflict_id="b"),
    ]
    store.record_outcomes(outcomes)
    assert store.outcomes() == [outcomes[1], outcomes[0]]


def check_terminal_staging(store: TerminalStore) -> None:
    """The staging area of a compacted catch-up: a later record replaces a staged one;
    promoting copies everything to the server's state and all but the kept keys to the
    local view, in the caller's transaction; a rollback keeps what was staged before."""
    assert store.staging() is None
    a1 = Record("orders", "a", {"x": 1}, {})
    a2 = Record("orders", "a", {"x": 2}, {})
    b = Record("orders", "b", {"x": 3}, {})
    mine = Record("orders", "mine", {"x": 4}, {})
    store.stage([a1, b], cursor=4, hlc=9)
    store.stage([a2], cursor=6, hlc=7)
    assert store.staging() == (6, 9)
    try:
        with store.transaction():
            store.stage([mine], cursor=8, hlc=20)
            raise _Boom
    except _Boom:
        pass
    assert store.staging() == (6, 9)
    assert store.server_records() == [] and store.records() == []
    local = Record("orders", "mine", {"x": 5}, {})
    store.put([local])
    with store.transaction():
        store.stage([mine], cursor=8, hlc=20)
        store.promote_staged([("orders", "mine")])
    assert store.staging() is None
    assert store.server_records() == [a2, b, mine]
    assert store.records() == [a2, b, local]
    store.stage([a1], cursor=9, hlc=1)
    store.clear_staged()
    assert store.staging() is None
    with store.transaction():
        store.promote_staged([])
    assert store.server_records() == [a2, b, mine]


def _outbox_plan(tenant_keys: list[str], now: int) -> Plan:
    """A plan that commits nothing but effects (outbox tests)."""
    effects = [Effect("orders", "kitchen_ticket", {"k": k, "n": 1}, key=k) for k in tenant_keys]
    return Plan(node_id="n1", high_water=0, effects=effects, received_ms=now)


def check_server_outbox_is_written_with_the_commit(store: ServerStore) -> None:
    with store.transaction("t"):
        store.commit("t", _outbox_plan(["a", "b"], 1_000))
    try:
        with store.transaction("t"):
            store.commit("t", _outbox_plan(["c"], 1_000))
            raise _Boom
    except _Boom:
        pass
    with store.transaction("t"):  # a key already there is left alone
        store.commit("t", _outbox_plan(["a"], 5_000))
    rows = store.effect_rows("t")
    assert [(r.key, r.state, r.due_ms, r.created_ms) for r in rows] == [
        ("a", "pending", 1_000, 1_000),
        ("b", "pending", 1_000, 1_000),
    ]
    assert rows[0].effect == Effect("orders", "kitchen_ticket", {"k": "a", "n": 1}, key="a")
    assert rows[0].idempotency_key == "t/a" and store.effect_rows("u") == []


def check_server_outbox_claims_lease_and_fence(store: ServerStore) -> None:
    with store.transaction("t"):
        store.commit("t", _outbox_plan(["a", "b"], 1_000))
    with store.transaction("u"):
        store.commit("u", _outbox_plan(["a"], 1_550))
    assert store.claim_effects(999, 100, 10) == []  # nothing due yet
    first = store.claim_effects(1_500, 100, 10)
    assert [(r.tenant, r.key, r.state, r.attempts, r.due_ms) for r in first] == [
        ("t", "a", "running", 1, 1_600),
        ("t", "b", "running", 1, 1_600),
    ]
    assert [a.started_ms for a in first[0].history] == [1_500]
    # leased: not claimed again before the lease ends (another tenant's effect is)
    assert [(r.tenant, r.key) for r in store.claim_effects(1_599, 100, 10)] == [("u", "a")]
    done = Settlement("done", 1_550, 0, "done", None)
    assert store.finish_effect(first[1], done, 1_550)
    assert not store.finish_effect(first[1], done, 1_550)  # settled already
    # the lease of t/a runs out: a new attempt, and the old claim can no longer settle
    again = store.claim_effects(1_600, 100, 10)
    assert [(r.tenant, r.key, r.attempts) for r in again] == [("t", "a", 2)]
    assert not store.finish_effect(first[0], done, 1_650)
    retry = Settlement("pending", 9_000, 1, "retry", "RuntimeError: down")
    assert store.finish_effect(again[0], retry, 1_650)
    (row,) = store.effect_rows("t", "pending")
    assert (row.key, row.due_ms, row.failures, row.last_error) == (
        "a",
        9_000,
        1,
        "RuntimeError: down",
    )
    assert [(a.attempt, a.started_ms, a.finished_ms, a.result) for a in row.history] == [
        (1, 1_500, None, None),  # its worker lost the lease
        (2, 1_600, 1_650, "retry"),
    ]
    assert [r.key for r in store.effect_rows("t", "done")] == ["b"]


def check_server_outbox_dead_letters_and_retries(store: ServerStore) -> None:
    with store.transaction("t"):
        store.commit("t", _outbox_plan(["a"], 0))
    (row,) = store.claim_effects(10, 100, 1)
    assert not store.retry_effect("t", "a", 20)  # only a dead effect is retried
    assert store.finish_effect(row, Settlement("dead", 20, 8, "dead", "ValueError: no"), 20)
    assert store.claim_effects(10_000, 100, 10) == []
    (dead,) = store.effect_rows(state="dead")
    assert (dead.tenant, dead.failures, dead.last_error) == ("t", 8, "ValueError: no")
    assert store.retry_effect("t", "a", 30) and not store.retry_effect("t", "zz", 30)
    (back,) = store.claim_effects(30, 100, 10)
    assert (back.attempts, back.failures, back.state) == (2, 0, "running")


SERVER_STORE_CHECKS: tuple[Callable[[ServerStore], None], ...] = (
    check_server_empty,
    check_server_push_and_pull,
    check_server_replay_is_idempotent,
    check_server_gap_writes_nothing,
    check_server_transaction_is_atomic,
    check_server_tenants_are_isolated,
    check_server_lists_in_byte_order,
    check_server_rejections_and_conflicts_are_kept,
    check_server_loads_many_keys,
    check_server_latest_is_compacted,
    check_server_outbox_is_written_with_the_commit,
    check_server_outbox_claims_lease_and_fence,
    check_server_outbox_dead_letters_and_retries,
)


def check_terminal_rows(store: TerminalStore) -> None:
    """Records given as their JSON (a pulled page's bytes as received, keys in any order)
    read back as the records they encode: the local view, the server's state, staged."""
    a = Record("orders", "a", {"x": 1, "lines": {"l1": {"qty": 2}}}, {"x": Stamp("0" * 16, "n", 3)})
    b = Record("orders", "b", {}, {}, deleted=True, deleted_stamp=Stamp("f" * 16, "n", 4))

    def rows(*records: Record) -> list[tuple[str, str, bytes]]:
        return [(r.collection, r.record_id, record_bytes(r)) for r in records]

    with store.transaction():
        store.put_server_rows(rows(a, b))
        store.put_rows(rows(b))
    assert store.server_records() == [a, b] and store.records() == [b]
    assert store.get(("orders", "b")) == b and store.get_server(("orders", "a")) == a
    a2 = msgspec.structs.replace(a, fields={"x": 2})
    with store.transaction():
        store.stage_rows(rows(a2), cursor=5, hlc=7)
    assert store.staging() == (5, 7)
    with store.transaction():
        store.promote_staged([])
    assert store.server_records() == [a2, b] and store.records() == [a2, b]
    # Confirmed rows are both views; a later server write leaves the local view as it was.
    c = Record("orders", "c", {"x": 5}, {})
    c2 = msgspec.structs.replace(c, fields={"x": 6})
    store.put([msgspec.structs.replace(c, fields={"x": 0})])
    with store.transaction():
        store.put_confirmed_rows(rows(c))
    assert store.get(c.key) == c and store.get_server(c.key) == c
    store.put_server_rows(rows(c2))
    assert store.get(c.key) == c and store.get_server(c.key) == c2
    assert store.records("orders") == [a2, b, c] and store.server_records() == [a2, b, c2]
    store.put_confirmed_rows(rows(c2))
    store.forget(c.key)
    assert store.get(c.key) is None and store.get_server(c.key) == c2
    assert store.records("orders") == [a2, b]


TERMINAL_STORE_CHECKS: tuple[Callable[[TerminalStore], None], ...] = (
    check_terminal_meta_and_rows,
    check_terminal_outbox,
    check_terminal_transaction_rolls_back,
    check_terminal_outcomes,
    check_terminal_staging,
    check_terminal_rows,
)
