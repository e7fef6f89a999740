"""Cash the server refused to record as a payment still shows in the drawer: the server's
``match_cash`` check flags it ("cash taken, payment not recorded") for a manager, so the
drawer's cash = the cash payments' net + what is flagged, always (protocol 19.7).
SQLite terminals, the server replica, the loopback transport."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fynlo_sync.client import Terminal
from fynlo_sync.domains.payments.attempts import attempt_net
from fynlo_sync.domains.payments.drawers import match_movement, z_report
from fynlo_sync.domains.payments.invariants import check_money
from fynlo_sync.domains.payments.till import Till
from fynlo_sync.effects import SERVER_NODE
from fynlo_sync.engine import apply_op
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.ops import Record
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import mkop
from tests.payments.fixtures import attempt_in, order_with, payments_registry

REGISTRY = payments_registry()


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.device = ManualClock(start_ms=1_700_000_000_000, tick_ms=1)
        self.server_now = ManualClock(start_ms=1_700_000_000_000)
        self.server = ServerReplica(MemoryServerStore(), REGISTRY, now_ms=self.server_now)
        self.tmp = tmp_path
        self.ids = itertools.count(1)

    def till(self, node: str) -> tuple[Terminal, Till]:
        store = SqliteTerminalStore(self.tmp / f"{node}.db", node)
        t = Terminal(
            store,
            REGISTRY,
            LoopbackTransport(self.server, "t1", node),
            wall=self.device,
            rng=random.Random(node),
        )
        return t, Till(t, f"drawer-{node}", lambda: f"{node}-{next(self.ids)}")


def order(t: Terminal, order_id: str, price: int) -> None:
    t.command("orders", order_id, "open", {"currency": "GBP"})
    t.command(
        "orders",
        order_id,
        "add_line",
        {"line_id": "l1", "item": "dish", "qty": 1, "unit_price": price},
    )


def drawer(t: Terminal, node: str) -> dict[str, Any]:
    found = t.get("drawers", f"drawer-{node}")
    assert found is not None
    return dict(found.fields)


def rows(t: Terminal) -> dict[str, dict[str, dict[str, Any]]]:
    return {c: {r.record_id: r.fields for r in t.records(c)} for c in ("orders", "drawers")}


def cash_net(t: Terminal) -> int:
    """What the cash payments of every order (tombstones too) kept in the drawers."""
    return sum(
        attempt_net(a)
        for r in t.records("orders")
        for a in (r.fields.get("payments") or {}).values()
        if a["method"] == "cash"
    )


def test_cash_the_server_refuses_stays_in_the_drawer_flagged_for_a_manager(
    tmp_path: Path,
) -> None:
    """A till that believes it is online takes 20000 in cash (above the offline limit);
    the op reaches the server ten minutes later, so it was made offline and needs a
    manager: the server refuses the payment. The 20000 is in the drawer: the drawer keeps
    its sale, the server flags it ``payment-refused``, and the money adds up."""
    w = World(tmp_path)
    t, till = w.till("till-a")
    till.open_drawer(5000, "GBP")
    order(t, "ok", 1000)
    order(t, "late", 20000)
    t.sync()
    till.take_cash("ok", 1000, 2000)  # change 1000: 1000 kept, matched
    t.sync()
    late = till.take_cash("late", 20000, 20000)
    w.server_now.advance(10 * 60_000)
    t.sync()
    assert [(o.status, o.reason) for o in t.outcomes() if o.status == "rejected"] == [
        ("rejected", "manager-required")
    ]
    t.sync()  # the server's flag comes back in the feed
    fields = drawer(t, "till-a")
    assert fields["expected"] == 5000 + 1000 + 20000  # the cash really is there
    (flagged,) = fields["findings"].items()
    assert flagged[1] == {
        "reason": "payment-refused",
        "kind": "sale",
        "amount": 20000,
        "order_id": "late",
        "attempt_id": late,
        "resolved_by": None,
        "outcome": None,
        "note": None,
    }
    assert (fields["unmatched"], fields["unresolved"]) == (20000, 1)
    record = t.get("drawers", "drawer-till-a")
    assert record is not None and record.stamps["findings"].node_id == SERVER_NODE
    # Drawer cash = float + the cash payments' net + what no payment accounts for.
    assert fields["expected"] == 5000 + cash_net(t) + fields["unmatched"]
    assert check_money(rows(t)) == []
    # Closing counts what is there; the Z-report shows the flagged cash.
    till.close_drawer(26000)
    z = z_report("drawer-till-a", drawer(t, "till-a"))
    assert (z["difference"], z["unmatched"]) == (0, 20000)
    assert z["findings"][flagged[0]]["reason"] == "payment-refused"
    # A manager resolves it (here: recorded again with their approval, on the same attempt,
    # so the order records the cash the drawer holds) and closes the finding.
    t.command(
        "orders",
        "late",
        "payment_cash",
        {"attempt_id": late, "amount": 20000, "tendered": 20000, "approved_by": "mgr-1"},
    )
    t.command(
        "drawers",
        "drawer-till-a",
        "drawer_resolve",
        {
            "movement_id": flagged[0],
            "outcome": "recorded",
            "note": "paid again, approved",
            "approved_by": "mgr-1",
        },
    )
    t.sync()
    fields = drawer(t, "till-a")
    assert (fields["unresolved"], fields["unmatched"]) == (0, 0)
    assert fields["findings"][flagged[0]]["resolved_by"] == "mgr-1"
    assert fields["expected"] == 5000 + cash_net(t) + fields["unmatched"]  # still adds up
    move = fields["movements"][flagged[0]]
    later = t.get("orders", "late")
    assert later is not None and match_movement(move, later.fields, False) is None
    # The effect ran once per movement: nothing more is flagged on a re-run.
    w.server.run_effects()
    t.sync()
    assert len(drawer(t, "till-a")["findings"]) == 1


def test_a_cash_refund_the_server_refuses_is_flagged_too(tmp_path: Path) -> None:
    """Cash handed back for a refund whose command the server refuses (made offline: it
    arrived late, no manager) left the drawer: flagged ``refund-refused``."""
    w = World(tmp_path)
    t, till = w.till("till-a")
    till.open_drawer(5000, "GBP")
    order(t, "o1", 3000)
    paid = till.take_cash("o1", 3000, 3000)
    t.sync()
    till.refund("o1", paid, 500)
    w.server_now.advance(10 * 60_000)
    t.sync()
    t.sync()
    fields = drawer(t, "till-a")
    (finding,) = fields["findings"].values()
    assert (finding["reason"], finding["kind"], finding["amount"]) == (
        "refund-refused",
        "refund",
        500,
    )
    assert fields["expected"] == 5000 + 3000 - 500
    assert fields["unmatched"] == -500
    assert fields["expected"] == 5000 + cash_net(t) + fields["unmatched"]


def test_a_delete_that_wins_over_offline_cash_leaves_the_cash_flagged(tmp_path: Path) -> None:
    """Terminal a deletes an order it sees unpaid and syncs first; terminal b, offline, took
    cash for it. The delete wins (11.4) and b's payment finds no order
    (``record-not-found``), but b's drawer keeps the sale and the server flags it
    ``order-deleted``: a manager sees cash taken for a deleted order, on every terminal."""
    w = World(tmp_path)
    a, _ = w.till("till-a")
    b, till_b = w.till("till-b")
    till_b.open_drawer(2000, "GBP")
    order(a, "o1", 1500)
    a.sync()
    b.sync()
    attempt_id = till_b.take_cash("o1", 1500, 2000)  # b is offline: nothing sent yet
    a.delete("orders", "o1")
    a.sync()
    b.sync()
    assert [o.reason for o in b.outcomes() if o.status == "rejected"] == ["record-not-found"]
    b.sync()
    a.sync()
    for t in (a, b):
        fields = drawer(t, "till-b")
        (finding,) = fields["findings"].values()
        assert (finding["reason"], finding["order_id"], finding["attempt_id"]) == (
            "order-deleted",
            "o1",
            attempt_id,
        )
        assert (fields["expected"], fields["unmatched"]) == (2000 + 1500, 1500)
        assert fields["expected"] == 2000 + cash_net(t) + fields["unmatched"]
        assert check_money(rows(t)) == []
    gone = a.get("orders", "o1")
    assert gone is None  # the delete stands: other domains keep 11.4 as it is
    # The manager hands the 1500 back and closes the finding: the drawer still adds up.
    till_b.move("out", 1500, reason="returned: order deleted")
    (movement_id,) = drawer(b, "till-b")["findings"]
    b.command(
        "drawers",
        "drawer-till-b",
        "drawer_resolve",
        {
            "movement_id": movement_id,
            "outcome": "returned",
            "note": "handed back",
            "approved_by": "mgr-1",
        },
    )
    b.sync()
    fields = drawer(b, "till-b")
    assert (fields["expected"], fields["unmatched"], fields["unresolved"]) == (2000, 1500, 0)
    # float + in - out + the cash payments' net + unmatched
    assert fields["expected"] == 2000 + 0 - 1500 + cash_net(b) + fields["unmatched"]


def _drawer_with_sale(**payment: Any) -> Record:
    op = mkop(
        1,
        "command",
        node="till-a",
        collection="drawers",
        record="d1",
        name="drawer_open",
        args={"currency": "GBP", "float": 0},
    )
    opened = apply_op(None, op, REGISTRY, 1)
    assert opened.record is not None
    move = mkop(
        2,
        "command",
        node="till-a",
        collection="drawers",
        record="d1",
        name="drawer_move",
        args={"movement_id": "m1", "kind": "sale", "amount": 1000, **payment},
    )
    moved = apply_op(opened.record, move, REGISTRY, 2)
    assert moved.status == "applied", moved.reason
    assert moved.record is not None
    return moved.record


def _drawer_cmd(record: Record | None, name: str, args: dict[str, Any], node: str) -> Any:
    op = mkop(3, "command", node=node, collection="drawers", record="d1", name=name, args=args)
    return apply_op(record, op, REGISTRY, 3)


def test_drawer_payment_rules_are_typed() -> None:
    # A sale or refund names its payment.
    sale = _drawer_with_sale(order_id="o1", attempt_id="a1")
    for args in ({}, {"order_id": "o1"}, {"order_id": "o1", "attempt_id": ""}):
        move = {"movement_id": "m2", "kind": "sale", "amount": 1, **args}
        refused = _drawer_cmd(sale, "drawer_move", move, "till-a")
        assert (refused.status, refused.reason) == ("rejected", "invalid-argument"), args
    bad = _drawer_cmd(
        sale,
        "drawer_move",
        {"movement_id": "m2", "kind": "refund", "amount": 1, "order_id": "o1", "attempt_id": "a1"},
        "till-a",
    )
    assert (bad.status, bad.reason) == ("rejected", "invalid-argument")  # no refund_id
    # Only the server flags; a known movement, a known reason, once.
    flag = {"movement_id": "m1", "reason": "payment-refused"}
    assert _drawer_cmd(sale, "drawer_flag", flag, "till-a").reason == "server-only"
    assert _drawer_cmd(sale, "drawer_flag", {**flag, "movement_id": "m9"}, SERVER_NODE).reason == (
        "no-such-movement"
    )
    assert _drawer_cmd(sale, "drawer_flag", {**flag, "reason": "odd"}, SERVER_NODE).reason == (
        "invalid-argument"
    )
    flagged = _drawer_cmd(sale, "drawer_flag", flag, SERVER_NODE)
    assert flagged.status == "applied"
    assert _drawer_cmd(flagged.record, "drawer_flag", flag, SERVER_NODE).reason == "flagged"
    # A manager resolves a flagged movement once, with a note.
    resolve = {
        "movement_id": "m1",
        "outcome": "returned",
        "note": "handed back",
        "approved_by": "mgr-1",
    }
    assert _drawer_cmd(sale, "drawer_resolve", resolve, "till-a").reason == "not-flagged"
    no_mgr = {k: v for k, v in resolve.items() if k != "approved_by"}
    assert _drawer_cmd(flagged.record, "drawer_resolve", no_mgr, "till-a").reason == (
        "manager-required"
    )
    no_note = {k: v for k, v in resolve.items() if k != "note"}
    assert _drawer_cmd(flagged.record, "drawer_resolve", no_note, "till-a").reason == (
        "invalid-argument"
    )
    odd = _drawer_cmd(flagged.record, "drawer_resolve", {**resolve, "outcome": "kept"}, "till-a")
    assert odd.reason == "invalid-argument"
    done = _drawer_cmd(flagged.record, "drawer_resolve", resolve, "till-a")
    assert done.status == "applied" and done.record.fields["unresolved"] == 0
    assert _drawer_cmd(done.record, "drawer_resolve", resolve, "till-a").reason == "resolved"


def test_matching_a_movement_against_its_order() -> None:
    cash = attempt_in("captured", "cash") | {"captured": 2000, "change": 500, "tendered": 2000}
    order_fields = order_with({"c1": cash, "k1": attempt_in("captured")}).fields
    sale = {"kind": "sale", "amount": 1500, "payment": {"order_id": "o", "attempt_id": "c1"}}
    assert match_movement(sale, order_fields, False) is None
    assert match_movement({**sale, "amount": 1400}, order_fields, False) == "payment-mismatch"
    card = {**sale, "payment": {"order_id": "o", "attempt_id": "k1"}}
    assert match_movement(card, order_fields, False) == "payment-mismatch"
    missing = {**sale, "payment": {"order_id": "o", "attempt_id": "zz"}}
    assert match_movement(missing, order_fields, False) == "payment-refused"
    assert match_movement(sale, None, True) == "order-deleted"
    assert match_movement(sale, None, False) == "order-missing"
    assert match_movement({"kind": "in", "amount": 5, "payment": None}, None, False) is None
    refund = {
        "kind": "refund",
        "amount": 300,
        "payment": {"order_id": "o", "attempt_id": "c1", "refund_id": "r1"},
    }
    assert match_movement(refund, order_fields, False) == "refund-refused"
    with_refund = dict(order_fields)
    refunded = {**cash, "refunds": {"r1": {"amount": 300}}, "refunded": 300}
    with_refund["payments"] = {**order_fields["payments"], "c1": refunded}
    assert match_movement(refund, with_refund, False) is None
    assert match_movement({**refund, "amount": 301}, with_refund, False) == "payment-mismatch"


def test_a_terminal_cannot_move_cash_of_a_payment_it_does_not_name(tmp_path: Path) -> None:
    w = World(tmp_path)
    _t, till = w.till("till-a")
    till.open_drawer(0, "GBP")
    with pytest.raises(RejectedOpError) as info:
        till.move("sale", 100)
    assert info.value.extra["reason"] == "invalid-argument"


def test_over_http_the_worker_flags_cash_for_an_order_deleted_first(tmp_path: Path) -> None:
    """The same race through the real server (HTTP, the effects worker, SQLite): two
    enrolled tills; the delete wins, the cash is flagged ``order-deleted`` on the drawer."""
    import time

    from fynlo_sync.transport.http import HttpTransport
    from server import admin
    from server.testing import embedded_settings, run_in_thread
    from tests.providers.conftest import wait_until

    settings = embedded_settings(tmp_path)
    with run_in_thread(settings, registry=REGISTRY) as url:
        tenant = admin.create_tenant(settings, "cafe")

        def till(node: int) -> tuple[Terminal, Till]:
            link = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
            t = Terminal(
                SqliteTerminalStore(tmp_path / f"till-{node}.db", link.node_id),
                REGISTRY,
                link,
                wall=lambda: time.time_ns() // 1_000_000,
            )
            return t, Till(t, f"drawer-{node}", lambda: f"{node}-{time.time_ns()}")

        a, _ = till(1)
        b, till_b = till(2)
        till_b.open_drawer(2000, "GBP")
        order(a, "o1", 1500)
        a.sync()
        b.sync()
        attempt_id = till_b.take_cash("o1", 1500, 1500)
        a.delete("orders", "o1")
        a.sync()
        b.sync()
        assert [o.reason for o in b.outcomes() if o.status == "rejected"] == ["record-not-found"]

        def flagged() -> Any:
            a.sync()
            found = a.get("drawers", "drawer-2")
            findings = {} if found is None else found.fields.get("findings") or {}
            return list(findings.values())

        (finding,) = wait_until(flagged, what="the drawer's finding")
        assert (finding["reason"], finding["attempt_id"], finding["amount"]) == (
            "order-deleted",
            attempt_id,
            1500,
        )


STEP = st.tuples(
    st.sampled_from(["cash", "cash", "refund", "delete", "sync", "late-sync"]),
    st.sampled_from(["a", "b"]),
    st.integers(0, 3),  # the order
)


@settings(max_examples=50, deadline=None)
@given(
    prices=st.lists(st.sampled_from([500, 1250, 3000, 12000]), min_size=4, max_size=4),
    steps=st.lists(STEP, max_size=14),
)
def test_random_two_till_nights_leave_every_drawer_movement_matched_or_flagged(
    prices: list[int], steps: list[tuple[str, str, int]]
) -> None:
    """Two tills take cash (some above the offline limit, some reaching the server late,
    so refused), refund it, and delete orders each from its own view, in any order: once
    both have synced, every payment movement of every drawer is either the cash its order
    records or flagged (never both), and the drawers' payment cash less what is flagged is
    exactly the cash the orders collected."""
    with tempfile.TemporaryDirectory() as folder:
        w = World(Path(folder))
        tills = {n: w.till(f"till-{n}") for n in ("a", "b")}
        a = tills["a"][0]
        for k, price in enumerate(prices):
            order(a, f"o{k}", price)
        a.sync()
        for t, till in tills.values():
            till.open_drawer(50000, "GBP")
            t.sync()
        taken: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
        for action, who, k in steps:
            t, till = tills[who]
            order_id = f"o{k}"
            try:
                if action == "cash":
                    found = t.get("orders", order_id)
                    due = 0 if found is None else found.fields.get("balance_due") or 0
                    if due:
                        taken[who].append((order_id, till.take_cash(order_id, due, due + 100)))
                elif action == "refund" and taken[who]:
                    paid_order, attempt_id = taken[who][-1]
                    if till.refundable(paid_order, attempt_id) >= 100:
                        till.refund(paid_order, attempt_id, 100, approved_by="mgr-1")
                elif action == "delete" and t.get("orders", order_id) is not None:
                    t.delete("orders", order_id)
                elif action == "late-sync":
                    w.server_now.advance(10 * 60_000)
                    t.sync()
                elif action == "sync":
                    t.sync()
            except RejectedOpError:
                pass  # the till's own view refused it: nothing was written
        for _ in range(2):
            for t, _till in tills.values():
                t.sync()
        store = w.server.store
        orders = {r.record_id: r for r in store.records("t1", "orders")}
        collected = sum(
            attempt_net(a)
            for r in orders.values()
            for a in (r.fields.get("payments") or {}).values()
            if a["method"] == "cash"
        )
        drawer_cash = 0
        for d in store.records("t1", "drawers"):
            moves = d.fields.get("movements") or {}
            findings = d.fields.get("findings") or {}
            for movement_id in sorted(moves):
                move = moves[movement_id]
                if not move.get("payment"):
                    continue
                found = orders.get(move["payment"]["order_id"])
                verdict = match_movement(
                    move,
                    None if found is None or found.deleted else found.fields,
                    found is not None and found.deleted,
                )
                # (A finding's reason is what the check found then: a refused payment's
                # order may be deleted since.)
                assert (verdict is None) != (movement_id in findings), (movement_id, verdict)
                drawer_cash += (1 if move["kind"] == "sale" else -1) * move["amount"]
            assert d.fields["expected"] == 50000 + sum(
                (1 if m["kind"] == "sale" else -1) * m["amount"] for m in moves.values()
            )
            drawer_cash -= d.fields["unmatched"]
        assert drawer_cash == collected
