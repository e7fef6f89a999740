"""The independent JavaScript port (examples/ports/js) against the same vector files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.protocol.vectors import VECTOR_DIR, load

RUNNER = Path(__file__).resolve().parents[2] / "examples" / "ports" / "js" / "run_vectors.js"
#: The files the port checks in full (push.json: every checksum in it; orders_state.json:
#: through the state table and schema it loads from domains.json).
PORTED = (
    "canonical.json",
    "checksum.json",
    "hlc.json",
    "conflicts.json",
    "orders_state.json",
    "push.json",
    "timeclock_state.json",
    "overtime.json",
    "fees.json",
    "payments_state.json",
    "payments_delete.json",
    "drawers.json",
    "timeclock_fraud.json",
    "session_capture.json",
    "session_refund.json",
    "ledger.json",
    "actors.json",
)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not on PATH, so the JavaScript port was NOT checked: install Node.js 20+ "
            "(e.g. `apt-get install nodejs`) and rerun, or run "
            "`node examples/ports/js/run_vectors.js docs/protocol/vectors` by hand"
        )
    return node


def test_the_javascript_port_passes_every_vector_it_implements() -> None:
    done = subprocess.run(
        [_node(), str(RUNNER), str(VECTOR_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in PORTED:
        assert f"{name}: {len(load(name))} passed, 0 failed" in done.stdout, done.stdout


def test_the_javascript_port_fails_on_an_altered_vector(tmp_path: Path) -> None:
    """The runner is not vacuous: one wrong expected value makes it exit non-zero."""
    node = _node()
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    text = (tmp_path / "canonical.json").read_text(encoding="utf-8")
    altered = text.replace(
        '"canonical": "{\\"a\\":2,\\"b\\":1}"', '"canonical": "{\\"b\\":1,\\"a\\":2}"'
    )
    assert altered != text
    (tmp_path / "canonical.json").write_text(altered, encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "FAIL canonical.json: members sorted, no whitespace" in done.stdout


def test_the_javascript_port_takes_the_orders_table_from_the_domains_document(
    tmp_path: Path,
) -> None:
    """Drop one transition from domains.json and the port's orders vectors fail: it has no
    table of its own."""
    node = _node()
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    doc = json.loads((tmp_path / "domains.json").read_text(encoding="utf-8"))
    orders = next(c for c in doc["collections"] if c["name"] == "orders")
    dropped = {"from": "ready", "command": "serve", "to": "served"}
    orders["state_table"]["transitions"].remove(dropped)
    (tmp_path / "domains.json").write_text(json.dumps(doc), encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "orders_state.json: 55 passed, 1 failed" in done.stdout
    assert "FAIL orders_state.json: ready + serve: allowed by the table" in done.stdout


def test_the_javascript_port_enforces_the_limits(tmp_path: Path) -> None:
    """Section 22 in the port: every push of push.json is judged by its limits too, and a
    limit vector with another expected limit (or an op it would not reject) fails."""
    node = _node()
    done = subprocess.run(
        [node, str(RUNNER), str(VECTOR_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"push.json (limits): {len(load('push.json'))} passed, 0 failed" in done.stdout
    for source in VECTOR_DIR.glob("*.json"):
        shutil.copy(source, tmp_path / source.name)
    vectors = load("push.json")
    by_name = {v["name"]: v for v in vectors}
    string = by_name["limits: a string longer than max_string_bytes (UTF-8) is refused"]
    string["limits"]["max_string_bytes"] = 18  # the 9 x "é" (18 bytes) now fits
    string["limits"]["max_field_bytes"] = 64
    record = by_name["limits: an op that would grow its record past max_record_bytes is rejected"]
    record["steps"][0]["expect"]["body"]["outcomes"][2]["status"] = "applied"
    (tmp_path / "push.json").write_text(json.dumps(vectors), encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert f"push.json (limits): {len(vectors) - 2} passed, 2 failed" in done.stdout, done.stdout
    assert "FAIL push.json (limits): limits: a string longer" in done.stdout
    assert "op 2 status" in done.stdout
