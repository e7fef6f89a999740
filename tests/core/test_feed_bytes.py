"""Each record of a push is encoded once: ``plan_push`` makes the record's JSON, splices
it into its change's canonical bytes and counts the feed growth from it; the stores write
those bytes. Here: the spliced bytes equal :func:`canonical_change` exactly (escapes,
characters outside the BMP, big numbers), so do the change's bytes of :func:`change_parts`,
whose record slice is the record's JSON, and the growth is the records' encoded size."""

from __future__ import annotations

import random

import msgspec

from fynlo_sync.engine import plan_push
from fynlo_sync.limits import encoded_size
from fynlo_sync.ops import Batch, Change, Record, Stamp
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import canonical_change, change_bytes, change_parts, record_bytes
from fynlo_sync.store.base import plan_body, plan_feed
from tests.core.conftest import mkop

_TEXT = ["", "a", 'q"uote', "back\\slash", "\n\t\x01", "café", "☕", "\U0001f600", "z" * 40]
#: Member separators of a change, as text (a record's bytes are sliced out between them).
_TEXT += [',"record":{', ',"seq":1}', "seq", "record"]


def _value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.random()
    if depth > 2 or pick < 0.5:
        return rng.choice([*_TEXT, 0, -7, 2**53 - 1, True, None])
    if pick < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(_TEXT): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _change(rng: random.Random) -> Change:
    fields = {f"f{i}{rng.choice(_TEXT)}": _value(rng) for i in range(rng.randint(0, 4))}
    stamp = Stamp(hlc="018bcfe568010000", node_id=rng.choice(["n1", "n☕", "n\U0001f600"]), seq=3)
    record = Record(
        collection=rng.choice(["orders", "notes\U0001f600"]),
        record_id=rng.choice(_TEXT[1:]),
        fields=fields,
        stamps={name: stamp for name in fields},
        deleted=rng.random() < 0.2,
        deleted_stamp=stamp if rng.random() < 0.2 else None,
        version=rng.randint(0, 10**6),
    )
    return Change(
        seq=rng.randint(1, 2**53 - 1),
        op_id=rng.choice(_TEXT[1:]),
        node_id=rng.choice(["n1", "n\"'☕", "n\U0001f600"]),
        node_seq=rng.randint(1, 10**9),
        record=record,
    )


def test_spliced_change_bytes_are_the_canonical_bytes() -> None:
    rng = random.Random(23)
    for _ in range(2000):
        change = _change(rng)
        body = record_bytes(change.record)
        assert change_bytes(change, body) == canonical_change(change)
        assert change_parts(change) == (canonical_change(change), body)
        assert len(body) == encoded_size(change.record)  # the growth counts the same bytes
        assert msgspec.json.decode(body, type=Record) == change.record


def test_a_plan_carries_its_feed_bytes_and_record_bodies(registry: Registry) -> None:
    ops = [mkop(1, "put", fields={"title": "a"}), mkop(2, fields={"title": "b☕"})]
    plan = plan_push(
        Batch.of("n1", ops), high_water=0, prior={}, rows={}, registry=registry, cursor=0
    )
    assert len(plan.changes) == 2
    assert plan.feed == [canonical_change(c) for c in plan.changes]
    assert [body for _, body in plan_feed(plan)] == plan.feed
    for key, record in plan.writes.items():
        assert msgspec.json.decode(plan_body(plan, key, record), type=Record) == record
    plan.feed.clear()  # a plan made some other way: the bytes are made when written
    plan.bodies.clear()
    assert [body for _, body in plan_feed(plan)] == [canonical_change(c) for c in plan.changes]
