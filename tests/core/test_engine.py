"""The pure engine: one op against one record, and a batch against the server's state."""

from __future__ import annotations

import msgspec
import pytest

from fynlo_sync.engine import apply_op, plan_push, rebase
from fynlo_sync.errors import (
    BatchTooLargeError,
    MalformedError,
    NodeMismatchError,
    ProtocolVersionError,
    SeqGapError,
    SeqReuseError,
)
from fynlo_sync.ops import Batch, Record
from fynlo_sync.plugins import CONFLICTS, Registry
from fynlo_sync.protocol import check_batch
from tests.core.conftest import mkop


def server_row(registry: Registry, collection: str = "notes", **fields: object) -> Record:
    """A record created by node n0 at server seq 1."""
    op = mkop(1, "put", node="n0", collection=collection, fields=dict(fields))
    result = apply_op(None, op, registry, seq=1)
    assert result.record is not None
    return result.record


def test_put_creates_with_a_stamp_per_field(registry: Registry) -> None:
    row = server_row(registry, title="soup", likes=2)
    assert row.fields == {"title": "soup", "likes": 2}
    assert {s.node_id for s in row.stamps.values()} == {"n0"}
    assert row.version == 1 and not row.deleted


def test_patch_of_a_missing_record_is_rejected_with_a_reason(registry: Registry) -> None:
    result = apply_op(None, mkop(1, fields={"title": "x"}), registry, 1)
    assert result.status == "rejected" and result.reason == "record-not-found"
    assert result.record is None


def test_unknown_field_and_wrong_type_are_rejected(registry: Registry) -> None:
    row = server_row(registry, title="soup")
    bad_field = apply_op(row, mkop(1, base=1, fields={"colour": "red"}), registry, 2)
    assert (bad_field.status, bad_field.reason) == ("rejected", "unknown-field")
    bad_type = apply_op(row, mkop(1, base=1, fields={"price": "12"}), registry, 2)
    assert (bad_type.status, bad_type.reason) == ("rejected", "invalid-field")


def test_unknown_collection_and_command_are_rejected(registry: Registry) -> None:
    unknown = apply_op(None, mkop(1, "put", collection="nope", fields={}), registry, 1)
    assert (unknown.status, unknown.reason) == ("rejected", "unknown-collection")
    cmd = mkop(1, "command", collection="orders", name="fly", args={})
    assert apply_op(None, cmd, registry, 1).reason == "unknown-command"


def test_a_field_the_op_had_seen_is_not_contested(registry: Registry) -> None:
    row = server_row(registry, title="soup")
    result = apply_op(row, mkop(1, base=1, fields={"title": "stew"}), registry, 2)
    assert result.status == "applied"
    assert result.record is not None and result.record.fields["title"] == "stew"


def test_own_earlier_writes_are_never_contested(registry: Registry) -> None:
    row = server_row(registry, title="soup")
    own = apply_op(row, mkop(2, node="n0", base=0, fields={"title": "stew"}), registry, 2)
    assert own.status == "applied"


@pytest.mark.parametrize(
    ("collection", "later_incoming", "status", "title"),
    [
        ("notes_server", True, "merged", "soup"),
        ("notes_client", False, "merged", "stew"),
        ("notes", True, "merged", "stew"),  # smart_merge: incoming is the later writer
        ("notes", False, "merged", "soup"),  # smart_merge: server is the later writer
    ],
)
def test_contested_lww_field_by_strategy(
    registry: Registry, collection: str, later_incoming: bool, status: str, title: str
) -> None:
    row = server_row(registry, collection, title="soup", body="b")
    op = mkop(
        1,
        collection=collection,
        base=0,
        hlc=5 if later_incoming else 0,
        fields={"title": "stew", "body": "new body"},
    )
    result = apply_op(row, op, registry, 2)
    assert result.status == status
    assert result.record is not None
    assert result.record.fields["title"] == title
    # body was contested too (same writer, same stamp) and follows the same rule
    assert result.record.fields["body"] == ("b" if title == "soup" else "new body")


def test_lww_tie_on_hlc_breaks_on_node_id(registry: Registry) -> None:
    row = server_row(registry, title="soup")  # n0 at hlc offset 1
    a = apply_op(row, mkop(1, node="n1", hlc=1, fields={"title": "n1"}), registry, 2)
    assert a.record is not None and a.record.fields["title"] == "n1"  # "n1" > "n0"
    b = apply_op(row, mkop(1, node="m", hlc=1, fields={"title": "m"}), registry, 2)
    assert b.record is not None and b.record.fields["title"] == "soup"  # "m" < "n0"


def test_counter_deltas_add_even_when_contested(registry: Registry) -> None:
    row = server_row(registry, "notes_server", likes=3)
    result = apply_op(row, mkop(1, collection="notes_server", fields={"likes": 2}), registry, 2)
    assert result.status == "applied"
    assert result.record is not None and result.record.fields["likes"] == 5


def test_smart_merge_unions_sets_ranks_states_and_merges_maps(registry: Registry) -> None:
    row = server_row(registry, tags=["a", "b"], status="review", meta={"x": 1, "y": 1})
    op = mkop(1, hlc=0, fields={"tags": ["b", "c"], "status": "draft", "meta": {"y": 2, "z": 2}})
    result = apply_op(row, op, registry, 2)
    assert result.status == "merged"
    assert result.record is not None
    assert result.record.fields["tags"] == ["a", "b", "c"]
    assert result.record.fields["status"] == "review"  # higher precedence than draft
    # the server wrote last (hlc): its value wins for the key both wrote
    assert result.record.fields["meta"] == {"x": 1, "y": 1, "z": 2}


def test_manual_parks_the_whole_op(registry: Registry) -> None:
    row = server_row(registry, "notes_manual", title="soup", body="b")
    op = mkop(1, collection="notes_manual", fields={"title": "stew", "likes": 1})
    result = apply_op(row, op, registry, 2)
    assert result.status == "conflict" and result.record is None
    assert result.conflict is not None
    assert result.conflict.contested == ["title"]
    assert result.conflict.server == row and result.conflict.op == op


@pytest.mark.parametrize(
    ("collection", "deleted"),
    [("notes_server", False), ("notes_client", True), ("notes", True)],
)
def test_delete_racing_an_edit(registry: Registry, collection: str, deleted: bool) -> None:
    row = server_row(registry, collection, title="soup")
    result = apply_op(row, mkop(1, "delete", collection=collection, hlc=9), registry, 2)
    assert result.status == "merged"
    assert (result.record is not None and result.record.deleted) == deleted


def test_edit_racing_a_delete(registry: Registry) -> None:
    row = server_row(registry, "notes_client", title="soup")
    gone = apply_op(row, mkop(2, "delete", node="n0", collection="notes_client"), registry, 2)
    assert gone.record is not None and gone.record.deleted
    # n1 had not seen the delete: client_wins resurrects with n1's patch
    back = apply_op(
        gone.record, mkop(1, collection="notes_client", fields={"body": "x"}), registry, 3
    )
    assert back.status == "merged"
    assert back.record is not None and not back.record.deleted
    assert back.record.fields == {"title": "soup", "body": "x"}
    # a patch by a node that had seen the delete is rejected
    late = apply_op(
        gone.record, mkop(1, base=2, collection="notes_client", fields={"body": "x"}), registry, 3
    )
    assert (late.status, late.reason) == ("rejected", "record-deleted")
    # manual parks the race
    manual = server_row(registry, "notes_manual", title="soup")
    parked = apply_op(manual, mkop(1, "delete", collection="notes_manual"), registry, 2)
    assert parked.status == "conflict" and parked.conflict is not None
    assert parked.conflict.contested == ["_deleted"]


def test_commands_run_against_current_state_and_illegal_transitions_reject(
    registry: Registry,
) -> None:
    open_op = mkop(1, "command", collection="orders", name="open", args={"currency": "GBP"})
    opened = apply_op(None, open_op, registry, 1)
    assert opened.status == "applied" and opened.record is not None
    assert opened.record.fields["status"] == "open" and opened.record.fields["total"] == 0
    again = apply_op(
        opened.record,
        mkop(2, "command", collection="orders", name="open", args={"currency": "GBP"}),
        registry,
        2,
    )
    assert (again.status, again.reason) == ("rejected", "illegal-transition")
    assert again.error is not None and "cannot open" in again.detail  # type: ignore[operator]


def test_direct_writes_to_command_only_fields_are_rejected(registry: Registry) -> None:
    op = mkop(1, "put", collection="orders", fields={"status": "closed", "currency": "GBP"})
    result = apply_op(None, op, registry, 1)
    assert (result.status, result.reason) == ("rejected", "command-only-field")


def batch(*ops: object, node: str = "n1") -> Batch:
    return Batch.of(node, list(ops))  # type: ignore[arg-type]


def test_plan_push_assigns_feed_seqs_and_advances_the_high_water_mark(registry: Registry) -> None:
    b = batch(
        mkop(1, "put", fields={"title": "a"}),
        mkop(2, fields={"nope": 1}),  # rejected: kept, advances the mark
        mkop(3, fields={"title": "b"}),
    )
    plan = plan_push(b, high_water=0, prior={}, rows={}, registry=registry, cursor=10)
    assert [o.status for o in plan.outcomes] == ["applied", "rejected", "applied"]
    assert plan.high_water == 3
    assert [c.seq for c in plan.changes] == [11, 12]
    assert [c.node_seq for c in plan.changes] == [1, 3]
    assert plan.cursor == 12
    assert plan.writes[("notes", "r1")].fields == {"title": "b"}
    assert len(plan.new_outcomes) == 3


def test_replayed_ops_are_duplicates_carrying_their_first_outcome(registry: Registry) -> None:
    first = plan_push(
        batch(mkop(1, "put", fields={"title": "a"}), mkop(2, fields={"nope": 1})),
        high_water=0,
        prior={},
        rows={},
        registry=registry,
        cursor=0,
    )
    prior = {o.seq: o for o in first.new_outcomes}
    again = plan_push(
        batch(
            mkop(1, "put", fields={"title": "a"}),
            mkop(2, fields={"nope": 1}),
            mkop(3, fields={"title": "c"}),
        ),
        high_water=2,
        prior=prior,
        rows=first.writes,
        registry=registry,
        cursor=first.cursor,
    )
    assert [(o.status, o.original) for o in again.outcomes] == [
        ("duplicate", "applied"),
        ("duplicate", "rejected"),
        ("applied", None),
    ]
    assert again.outcomes[1].reason == "unknown-field"
    assert len(again.changes) == 1 and len(again.new_outcomes) == 1


def test_a_gap_is_refused_with_the_expected_seq(registry: Registry) -> None:
    with pytest.raises(SeqGapError) as info:
        plan_push(
            batch(mkop(5, "put", fields={})),
            high_water=3,
            prior={},
            rows={},
            registry=registry,
            cursor=0,
        )
    assert info.value.extra["expected"] == 4
    assert info.value.status == 409


def test_a_reused_seq_with_another_op_id_is_refused(registry: Registry) -> None:
    first = plan_push(
        batch(mkop(1, "put", fields={})),
        high_water=0,
        prior={},
        rows={},
        registry=registry,
        cursor=0,
    )
    imposter = msgspec.structs.replace(mkop(1, "put", fields={}), op_id="other")
    with pytest.raises(SeqReuseError):
        plan_push(
            batch(imposter),
            high_water=1,
            prior={o.seq: o for o in first.new_outcomes},
            rows={},
            registry=registry,
            cursor=1,
        )


def test_envelope_rules() -> None:
    def plan(b: Batch, max_ops: int = 1000) -> None:
        check_batch(b, max_ops=max_ops)

    with pytest.raises(ProtocolVersionError):
        plan(Batch.of("n1", [mkop(1, "put", fields={})], protocol=2))
    with pytest.raises(BatchTooLargeError):
        plan(batch(mkop(1, "put", fields={}), mkop(2, fields={})), max_ops=1)
    with pytest.raises(NodeMismatchError):
        plan(batch(mkop(1, "put", fields={}, node="n2")))
    with pytest.raises(MalformedError, match="consecutive"):
        plan(batch(mkop(1, "put", fields={}), mkop(3, fields={})))


def test_a_parked_op_writes_a_conflict_record_to_the_feed(registry: Registry) -> None:
    row = server_row(registry, "notes_manual", title="soup")
    op = mkop(1, collection="notes_manual", fields={"title": "stew"})
    plan = plan_push(
        batch(op), high_water=0, prior={}, rows={row.key: row}, registry=registry, cursor=1
    )
    assert plan.outcomes[0].status == "conflict"
    assert plan.outcomes[0].conflict_id == "n1:1"
    (change,) = plan.changes
    assert change.record.collection == CONFLICTS
    assert change.record.fields["state"] == "open"
    assert change.record.fields["server"]["fields"] == {"title": "soup"}
    assert row.key not in plan.writes  # the record itself is untouched


def test_rebase_predicts_what_the_server_decides(registry: Registry) -> None:
    row = server_row(registry, title="soup", likes=1)
    pending = [mkop(1, hlc=0, fields={"title": "stew", "likes": 2}), mkop(2, fields={"body": "x"})]
    local = rebase(row, pending, registry)
    plan = plan_push(
        batch(*pending), high_water=0, prior={}, rows={row.key: row}, registry=registry, cursor=1
    )
    server = plan.writes[row.key]
    assert local is not None
    assert local.fields == server.fields == {"title": "soup", "likes": 3, "body": "x"}


def test_a_counter_refuses_null(registry: Registry) -> None:
    row = server_row(registry, likes=3)
    result = apply_op(row, mkop(1, base=1, fields={"likes": None}), registry, 2)
    assert (result.status, result.reason) == ("rejected", "invalid-field")
    created = apply_op(None, mkop(1, "put", fields={"likes": None}), registry, 1)
    assert (created.status, created.reason) == ("rejected", "invalid-field")


def test_a_counter_may_not_leave_the_exact_integer_range(registry: Registry) -> None:
    row = server_row(registry, likes=2**53 - 2)
    ok = apply_op(row, mkop(1, base=1, fields={"likes": 1}), registry, 2)
    assert ok.status == "applied"
    assert ok.record is not None
    over = apply_op(ok.record, mkop(2, base=2, fields={"likes": 1}), registry, 3)
    assert (over.status, over.reason) == ("rejected", "invalid-field")
