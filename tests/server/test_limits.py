"""Limits and hostile input against a real server on both backends (issue 14, parts 1-2):
the poisoned value that used to wedge a tenant, the amplification push, oversized strings,
fields and records, pull pages capped by bytes, and the inputs that used to answer 500.

Every case checks the status and the problem type, and a pull proving nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fynlo_sync.canonical import checksum
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server.testing import run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, _settings_for, batch_of, note_op, raw
from tests.server.test_http import problem

#: Small limits, so that each case is cheap; the ratios are the defaults'.
LIMITS: dict[str, Any] = {
    "max_batch": 200,
    "max_body_bytes": 256 * 1024,
    "max_string_bytes": 4096,
    "max_field_bytes": 8192,
    "max_record_bytes": 16384,
    "max_push_growth_bytes": 65536,
    "max_page_bytes": 65536,
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tight(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    kind: str = request.param
    settings = _settings_for(kind, request, tmp_path_factory.mktemp(f"limits-{kind}"), **LIMITS)
    with run_in_thread(settings, registry=make_registry()) as url:
        server = Live(url, settings, kind)
        yield server
        for link in server.links:
            link.close()


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def push_raw(live: Live, link: HttpTransport, body: dict[str, Any] | bytes) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw(live, "POST", "/v1/sync/push", link, content=content)


def signed(node: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"protocol": 1, "node_id": node, "ops": ops, "checksum": checksum(ops)}


def op_dict(node: str, seq: int, **over: Any) -> dict[str, Any]:
    return msgspec.to_builtins(note_op(node, seq, **over))  # type: ignore[no-any-return]


def unchanged(live: Live, link: HttpTransport, cursor: int) -> None:
    page = link.pull(0, 1000)
    assert page.cursor == cursor and len(page.changes) == cursor


# ------------------------------------------------------------------ the poisoned value


@pytest.mark.parametrize("collection", ["notes", "notes_manual"])
def test_poisoned_value_is_refused_and_the_tenant_keeps_syncing(
    tight: Live, tmp_path: Path, collection: str
) -> None:
    """A value nested ~990 deep used to be accepted and then make every pull past it (and
    GET /v1/conflicts) answer 500 for the whole tenant. notes_manual parks every race, so
    the poison would also sit inside a conflict record."""
    tenant = tight.tenant()
    clock = ManualClock(tick_ms=1)
    good, other = (tight.terminal(tenant, tmp_path, clock, seed) for seed in (1, 2))
    good.put(collection, "r1", {"title": "first"})
    good.sync()
    other.sync()
    attacker = tight.device(tenant)
    for depth in (65, 990, 5000):
        poison = op_dict(attacker.node_id, 1, collection=collection, fields={"title": "x"})
        poison["fields"]["tags"] = "POISON"
        # (written as text, with no checksum: a value this deep cannot even be encoded or
        # canonicalised by Python's recursive code; the server checks depth first)
        body = {"protocol": 1, "node_id": attacker.node_id, "ops": [poison], "checksum": "0"}
        text = json.dumps(body).replace('"POISON"', "[" * depth + "]" * depth)
        r = push_raw(tight, attacker, text.encode())
        got = problem(r, 422, "limit-exceeded")
        assert got["limit"] == "depth" and got["max"] == 64
    # The tenant is not wedged: the other terminals push and pull, conflicts list.
    other.patch(collection, "r1", {"title": "second"})
    other.sync()
    good.sync()
    record = good.get(collection, "r1")
    assert record is not None and record.fields["title"] == "second"
    assert raw(tight, "GET", "/v1/conflicts", attacker).status_code == 200
    assert attacker.pull(0, 1).changes[0].seq == 1
    # Just inside the limit is fine (the body is 1, ops 2, op 3, fields 4, tags 5..64).
    ok = op_dict(attacker.node_id, 1, record="r2", fields={"title": "x", "tags": nested(60)})
    assert push_raw(tight, attacker, signed(attacker.node_id, [ok])).status_code == 200
    assert attacker.pull(0, 100).cursor == 3


@pytest.mark.parametrize("path", ["/v1/auth/device", "/v1/auth/refresh"])
def test_deep_json_on_unauthenticated_routes_is_422(tight: Live, path: str) -> None:
    for depth in (100, 1200, 100_000):
        body = '{"enrollment_code": "a.b", "refresh_token": "x", "z": %s}' % (
            "[" * depth + "]" * depth
        )
        got = problem(raw(tight, "POST", path, content=body.encode()), 422, "limit-exceeded")
        assert got["limit"] == "depth"


# --------------------------------------------------------------------- size limits


def test_long_string_big_field_and_big_record(tight: Live) -> None:
    link = tight.device(tight.tenant())
    node = link.node_id
    long_string = op_dict(node, 1, fields={"title": "é" * 2049})  # 4098 UTF-8 bytes
    got = problem(push_raw(tight, link, signed(node, [long_string])), 422, "limit-exceeded")
    assert got["limit"] == "string_bytes" and got["path"] == "$[0].fields.title"
    long_key = op_dict(node, 1, fields={"title": "a", "tags": {"k" * 4097: 1}})
    got = problem(push_raw(tight, link, signed(node, [long_key])), 422, "limit-exceeded")
    assert got["limit"] == "string_bytes"
    big_field = op_dict(node, 1, fields={"title": "a", "tags": ["x" * 1000] * 9})
    got = problem(push_raw(tight, link, signed(node, [big_field])), 422, "limit-exceeded")
    assert got["limit"] == "field_bytes" and got["path"] == "$[0].fields.tags"
    unchanged(tight, link, 0)
    # A record that grows past max_record_bytes: that op is rejected (final), the rest apply.
    fields = {"title": "a", "tags": ["x" * 1000] * 8}
    grow = {"body": "y" * 4000, "meta": {"a": "z" * 4000, "b": "z" * 4000}}
    ops = [
        note_op(node, 1, fields=fields),
        note_op(node, 2, kind="patch", fields=grow),
        note_op(node, 3, kind="patch", fields={"likes": 1}),
    ]
    result = link.push(Batch.of(node, ops))
    assert [(o.status, o.reason) for o in result.outcomes] == [
        ("applied", None),
        ("rejected", "record-too-large"),
        ("applied", None),
    ]
    assert link.pull(0, 100).cursor == 2


def test_amplification_push_is_bounded(tight: Live) -> None:
    """The 1.3 MB push of the issue, scaled to these limits: a near-limit record, then
    patches of it. Each change stores the whole record, so 199 patches would add 199
    records to the feed: refused with 413 (``max_growth_bytes``); the client halves its
    batches until they fit, so everything still goes through."""
    link = tight.device(tight.tenant())
    node = link.node_id
    big = {"title": "a", "tags": ["x" * 1000] * 7}  # ~7 KB of record
    ops = [note_op(node, 1, fields=big)] + [
        note_op(node, s, kind="patch", fields={"likes": s}) for s in range(2, 200)
    ]
    r = push_raw(tight, link, encode_batch(Batch.of(node, ops)))
    got = problem(r, 413, "batch-too-large")
    assert got["max_growth_bytes"] == LIMITS["max_push_growth_bytes"]
    unchanged(tight, link, 0)
    # Fewer ops at once fit; a page is capped by bytes as well as by count.
    for first in range(0, 200, 8):
        assert link.push(Batch.of(node, ops[first : first + 8])).high_water == min(first + 8, 199)
    page = link.pull(0, 1000)
    size = len(msgspec.json.encode(page.changes))
    assert page.more and len(page.changes) < 199 and size <= LIMITS["max_page_bytes"]
    seen, cursor = len(page.changes), page.cursor
    while page.more:
        page = link.pull(cursor, 1000)
        seen, cursor = seen + len(page.changes), page.cursor
    assert seen == 199


# ------------------------------------------------------- inputs that answered 500


def test_nul_in_identifiers_is_422_on_every_backend(tight: Live) -> None:
    link = tight.device(tight.tenant())
    node = link.node_id
    for member in ("op_id", "record_id", "collection"):
        op = op_dict(node, 1)
        op[member] = "a\x00b"
        r = push_raw(tight, link, signed(node, [op]))
        problem(r, 422, "malformed")
    unchanged(tight, link, 0)
    r = raw(tight, "POST", "/v1/auth/device", json={"enrollment_code": "ab\x00cd.secret"})
    problem(r, 401, "unauthenticated")
    r = raw(tight, "POST", "/v1/auth/refresh", json={"refresh_token": "rt_\x00"})
    problem(r, 401, "unauthenticated")
    r = raw(tight, "POST", "/v1/conflicts/a%00b/resolve", link, json={"choice": "server"})
    problem(r, 404, "conflict-not-found")


def test_cursor_beyond_the_integer_range_is_422(tight: Live) -> None:
    link = tight.device(tight.tenant())
    for cursor in (2**53, 2**63, 2**64, 10**30):
        problem(raw(tight, "GET", f"/v1/sync/pull?cursor={cursor}", link), 422, "malformed")
    problem(raw(tight, "GET", f"/v1/sync/pull?limit={2**63}", link), 422, "malformed")


def test_conflicts_collection_is_written_only_by_resolve(tight: Live) -> None:
    link = tight.device(tight.tenant())
    node = link.node_id
    ops = [
        note_op(node, 1, collection="conflicts", record_id="x:1", fields={}),
        note_op(node, 2, collection="conflicts", record_id="x:1", kind="patch", fields={}),
        note_op(node, 3, collection="conflicts", record_id="x:1", kind="delete", fields=None),
    ]
    result = link.push(Batch.of(node, ops))
    assert [(o.status, o.reason) for o in result.outcomes] == [
        ("rejected", "command-only-field")
    ] * 3
    unchanged(tight, link, 0)
    problem(
        raw(tight, "POST", "/v1/conflicts/x:1/resolve", link, json={"choice": "server"}),
        404,
        "conflict-not-found",
    )


def test_resolving_with_an_underscore_field_is_422(tight: Live, tmp_path: Path) -> None:
    tenant = tight.tenant()
    clock = ManualClock(tick_ms=1)
    till, bar = (tight.terminal(tenant, tmp_path, clock, seed) for seed in (3, 4))
    till.put("notes_manual", "n1", {"title": "first"})
    till.sync()
    bar.sync()
    till.patch("notes_manual", "n1", {"title": "a"})
    bar.patch("notes_manual", "n1", {"title": "b"})
    till.sync()
    bar.sync()
    link = bar.transport
    assert isinstance(link, HttpTransport)
    [conflict] = link.get("/v1/conflicts")["conflicts"]
    before = link.pull(0, 1000).cursor
    for fields in ({"_x": 1}, {"title": 1.5}):
        r = raw(
            tight,
            "POST",
            f"/v1/conflicts/{conflict['record_id']}/resolve",
            link,
            json={"choice": "value", "fields": fields},
        )
        assert r.status_code == 422, r.text
    assert link.pull(0, 1000).cursor == before
    assert len(link.get("/v1/conflicts")["conflicts"]) == 1


def test_a_batch_of_the_fixture_still_pushes(tight: Live) -> None:
    """The limits leave ordinary traffic alone."""
    link = tight.device(tight.tenant())
    assert link.push(batch_of(link.node_id, 1, 50)).high_water == 50
