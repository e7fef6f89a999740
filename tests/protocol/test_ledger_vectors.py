"""``ledger.json`` (protocol section 19.8), as read, against our ledger; and the JavaScript
port fails when a vector of it is altered."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fynlo_sync.domains.payments.ledger import posting_sets
from fynlo_sync.engine import apply_op
from fynlo_sync.ops import Op, Record
from tests.payments.fixtures import STAMP, payments_registry
from tests.protocol.payments_vectors import settings_of
from tests.protocol.test_js_port import RUNNER, _node
from tests.protocol.vectors import VECTOR_DIR, load

LEDGER = [v for v in load("ledger.json") if "existing" not in v]
POSTS = [v for v in load("ledger.json") if "existing" in v]


@pytest.mark.parametrize("vector", LEDGER, ids=[v["name"] for v in LEDGER])
def test_ledger_vector(vector: dict[str, Any]) -> None:
    """Replay the ops with the payments plugin: the attempts are the vector's, and the
    posting sets the ledger derives from them are its ``expect``, each summing to 0."""
    registry = payments_registry(settings_of(vector.get("settings")))
    row = Record(
        collection="orders",
        record_id="o-1",
        fields=vector["order"],
        stamps={name: STAMP for name in vector["order"]},
        version=4,
    )
    for n, op in enumerate(vector["ops"], start=1):
        result = apply_op(row, msgspec.convert(op, Op), registry, n + 4)
        assert result.status == "applied" and result.record is not None, result
        row = result.record
    assert row.fields["payments"] == vector["payments"]
    sets = [{"set_id": s.set_id, **s.to_fields()} for s in posting_sets("o-1", row.fields)]
    assert sets == vector["expect"]
    for s in vector["expect"]:
        assert sum(p["amount"] for p in s["postings"]) == 0, s["set_id"]
        assert all(p["amount"] != 0 for p in s["postings"]), s["set_id"]


@pytest.mark.parametrize("vector", POSTS, ids=[v["name"] for v in POSTS])
def test_post_vector(vector: dict[str, Any]) -> None:
    """The ``post`` command: the set written as it is, or refused with the reason."""
    op = msgspec.convert(vector["op"], Op)
    existing = None
    if vector["existing"] is not None:
        fields = vector["existing"]
        existing = Record(
            collection="ledger",
            record_id=op.record_id,
            fields=fields,
            stamps={name: STAMP for name in fields},
            version=1,
        )
    result = apply_op(existing, op, payments_registry(), 30)
    got = {
        "status": result.status,
        "reason": result.reason,
        "fields": None if result.record is None else result.record.fields,
    }
    assert got == vector["expect"]


def test_ledger_vectors_cover_every_event() -> None:
    events = {s["event"] for v in LEDGER for s in v["expect"]}
    kinds = {p["kind"] for v in LEDGER for s in v["expect"] for p in s["postings"]}
    currencies = {s["currency"] for v in LEDGER for s in v["expect"]}
    assert events == {"capture", "refund", "reversal", "correction"}
    assert kinds == {"gross", "change", "processor_fee", "platform_fee", "tip", "net", "refund"}
    assert currencies == {"GBP", "USD"}
    reasons = {v["expect"]["reason"] for v in POSTS}
    assert reasons == {None, "server-only", "posting-exists", "unbalanced", "invalid-argument"}


def _run_altered(tmp_path: Path, vectors: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = _node()
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "ledger.json").write_text(json.dumps(vectors), encoding="utf-8")
    return subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_javascript_port_fails_on_an_altered_ledger_vector(tmp_path: Path) -> None:
    """Three alterations: a fee moved between the processor and the restaurant (still
    balanced, but not the rule), a tip changed alone (unbalanced), and an unbalanced post
    expected to be written."""
    vectors = load("ledger.json")
    first, tie = vectors[0], vectors[4]
    moved = first["expect"][0]["postings"]
    fee = next(p for p in moved if p["kind"] == "processor_fee")
    net = next(p for p in moved if p["kind"] == "net")
    fee["amount"] += 1
    net["amount"] -= 1
    tip = next(p for p in vectors[1]["expect"][0]["postings"] if p["kind"] == "tip")
    tip["amount"] += 10
    assert tie["expect"][0]["postings"]  # left alone: still passes
    unbalanced = next(v for v in vectors if v["name"] == "post: entries that do not sum to 0")
    unbalanced["expect"] = {"status": "applied", "reason": None, "fields": unbalanced["op"]["args"]}
    done = _run_altered(tmp_path, vectors)
    assert done.returncode == 1, done.stdout
    assert f"ledger.json: {len(vectors) - 3} passed, 3 failed" in done.stdout, done.stdout
    assert "FAIL ledger.json: post: entries that do not sum to 0: outcome" in done.stdout
    assert f"FAIL ledger.json: {first['name']}: posting sets" in done.stdout, done.stdout
    assert f"FAIL ledger.json: {vectors[1]['name']}: the vector's unbalanced sets" in done.stdout
