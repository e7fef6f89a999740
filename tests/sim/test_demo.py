"""``fynlo demo`` end to end, small: the real server, real HTTP and WebSockets, cables
pulled and put back; the report must say everything arrived once and converged."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fynlo_sync.cli import main

pytest.importorskip(
    "litestar", reason="the demo needs the server extra: pip install -e '.[server]'"
)
pytest.importorskip("rich", reason="the demo needs the server extra: pip install -e '.[server]'")

REQUIRED = (
    "converged",
    "ops_made",
    "ops_applied",
    "ops_lost",
    "ops_duplicated",
    "conflicts",
    "rejected",
    "terminals",
    "seed",
)


def _check(data: dict[str, object], terminals: int, seed: int) -> None:
    for key in REQUIRED:
        assert key in data, key
    assert data["converged"] is True, data.get("differences")
    assert data["terminals"] == terminals and data["seed"] == seed
    assert data["ops_lost"] == 0 and data["ops_duplicated"] == 0
    made = data["ops_made"]
    assert isinstance(made, int) and made > 0
    outcomes = [data["ops_applied"], data["ops_merged"], data["conflicts"], data["rejected"]]
    assert sum(int(str(n)) for n in outcomes) == made  # every op has exactly one outcome
    sync = data["sync"]
    assert isinstance(sync, dict)
    cut = [t for t in sync.values() if t["offline_s"] > 0]
    assert cut, "some terminal must lose the internet"
    assert all(t["syncs_failed"] > 0 and t["catch_up_ms"] is not None for t in cut)


def test_fynlo_demo_json_on_the_in_process_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["demo", "--json", "--terminals", "3", "--ops", "4", "--seed", "5", "--out", str(tmp_path)]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    _check(data, 3, 5)
    assert data["audited_against"] == "server op log"
    assert data["orders"] > 0 and data["totals_add_up"] is True
    svg = ET.parse(tmp_path / "timeline.svg").getroot()
    assert svg.tag.endswith("svg")
    names = {t.text for t in svg.iter() if t.tag.endswith("text")}
    assert {"till-1", "till-2", "bar"} <= names
    assert "converged" in (tmp_path / "report.md").read_text()
    assert "<svg" in (tmp_path / "report.html").read_text()
    # The money: paid in cash and by card, an overpayment by two terminals cut off from
    # the server found at sync and refunded, a void; every drawer counted and closed.
    assert data["money_adds_up"] is True and data["ledger_balanced"] is True
    assert data["double_charges"] == 0
    assert data["payments"]["cash"] > 0 and data["payments"]["card"] > 0
    money = data["money"]
    assert money["overpayments"] == 1 and money["refunds"] > 0 and money["refunds_due_open"] == 0
    assert money["voids"] >= 1 and money["violations"] == []
    assert money["drawer_cash"] == money["collected"]["cash"]
    assert all(d["status"] == "closed" for d in money["drawers"].values())
    assert ET.parse(tmp_path / "revenue.svg").getroot().tag.endswith("svg")


def test_fynlo_demo_against_a_running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.testing import LocalServer

    with LocalServer.start(tmp_path / "server") as running:
        monkeypatch.setenv("FYNLO_DATABASE_URL", running.settings.database_url)
        out = tmp_path / "report"
        code = main(
            [
                "demo",
                "--json",
                "--terminals",
                "2",
                "--ops",
                "4",
                "--seed",
                "2",
                "--server-url",
                running.url,
                "--out",
                str(out),
            ]
        )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    _check(data, 2, 2)
    assert data["audited_against"] == "server feed + terminal outcomes"
    assert (out / "timeline.svg").exists()
