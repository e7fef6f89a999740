"""``actors.json`` (protocol sections 20.1, 20.2), as read, against our actor check and
roles table; and the JavaScript port fails when the table or a case is altered."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fynlo_sync.domains.staff.roles import PERMISSIONS, ROLE_ORDER, permissions_of_role
from fynlo_sync.engine import apply_op, authorize
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.ops import Op, Record
from tests.payments.fixtures import STAMP
from tests.protocol.actors_vectors import TABLE_NAME, registry
from tests.protocol.test_js_port import RUNNER, _node
from tests.protocol.vectors import VECTOR_DIR, load

ACTORS = load("actors.json")
TABLE, CASES = ACTORS[0], ACTORS[1:]


def test_the_table_is_the_roles_module_and_the_collections() -> None:
    assert TABLE["name"] == TABLE_NAME
    assert TABLE["permissions"] == sorted(PERMISSIONS)
    assert [r["role"] for r in TABLE["roles"]] == list(ROLE_ORDER)
    for row in TABLE["roles"]:
        assert set(row["grants"]) == permissions_of_role(row["role"])
    reg = registry()
    for name in reg.collection_names:
        assert dict(reg.collection(name).permissions) == TABLE["needs"].get(name, {})


@pytest.mark.parametrize("vector", CASES, ids=[v["name"] for v in CASES])
def test_actor_vector(vector: dict[str, Any]) -> None:
    op = msgspec.convert(vector["op"], Op)
    actor = None if vector["actor"] is None else msgspec.convert(vector["actor"], Record)
    if "order" in vector:  # a rule of 19.4 inside a payment command
        row = Record(
            collection="orders",
            record_id="o-1",
            fields=vector["order"],
            stamps={name: STAMP for name in vector["order"]},
            version=4,
        )
        result = apply_op(row, op, registry(), 9, actor=actor)
        if result.status == "applied":
            assert result.record is not None
            assert vector["expect"] == {
                "status": "applied",
                "payments": result.record.fields["payments"],
            }
        else:
            assert result.error is not None
            assert vector["expect"] == {
                "status": "rejected",
                "reason": result.reason,
                "permission": result.error.extra.get("permission"),
            }
        return
    try:
        authorize(op, registry(), actor)
    except RejectedOpError as exc:
        got = {
            "status": "rejected",
            "reason": exc.extra["reason"],
            "permission": exc.extra.get("permission"),
        }
    else:
        got = {"status": "allowed"}
    assert got == vector["expect"]


def test_the_javascript_port_fails_on_an_altered_actors_vector(tmp_path: Path) -> None:
    """A case with another outcome fails; so do the three cases a dropped need decides
    (the port takes what a command needs from the table, with no copy of its own), and a
    payment rule naming another permission."""
    node = _node()
    vectors = load("actors.json")
    by_name = {v["name"]: v for v in vectors}
    by_name["staff: punch in"]["expect"] = {
        "status": "rejected",
        "reason": "forbidden",
        "permission": "timeclock.punch",
    }
    del vectors[0]["needs"]["timecards"]["decide"]
    rule = by_name["rule: a refund made offline by a supervisor needs payment.offline"]
    rule["expect"]["permission"] = "refund.above_limit"
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "actors.json").write_text(json.dumps(vectors), encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stdout
    assert f"actors.json: {len(vectors) - 5} passed, 5 failed" in done.stdout, done.stdout
    assert "FAIL actors.json: staff: punch in: outcome" in done.stdout
    for role in ("staff", "supervisor", "chef"):
        assert f"FAIL actors.json: {role}: decide on overtime: outcome" in done.stdout
    assert "FAIL actors.json: rule: a refund made offline by a supervisor" in done.stdout


def test_the_javascript_port_checks_the_role_hierarchy(tmp_path: Path) -> None:
    """A supervisor who no longer holds what staff holds breaks 20.2: the table vector fails."""
    node = _node()
    vectors = load("actors.json")
    vectors[0]["roles"][1]["grants"].remove("timeclock.punch")
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "actors.json").write_text(json.dumps(vectors), encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert f"FAIL actors.json: {TABLE_NAME}: role supervisor lacks timeclock.punch" in done.stdout
