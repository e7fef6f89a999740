"""The staff commands through ``fynlo`` itself, on a real SQLite database."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fynlo_sync.cli import main
from fynlo_sync.domains.timeclock import timecard_id
from fynlo_sync.domains.timeclock.rules import HOUR_MS
from fynlo_sync.plugins import Draft
from server.staff import author_one, run_admin
from server.testing import embedded_settings

#: A past week (the server refuses punches ahead of its clock): Monday 23 November 2026.
WEEK = "2026-11-23"
WEEK_START = 1_795_392_000_000 + 4 * HOUR_MS

PLUGINS = ",".join(
    (
        "fynlo_sync.domains.orders:OrdersPlugin",
        "fynlo_sync.domains.staff:StaffPlugin",
        "fynlo_sync.domains.timeclock:TimeclockPlugin",
    )
)


def fynlo(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out) if "--json" in argv else out


def test_employees_audit_and_the_labour_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "server.db"
    monkeypatch.setenv("FYNLO_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("FYNLO_PLUGINS", PLUGINS)
    fynlo(capsys, "tenant", "create", "--id", "t1", "Cafe", "--json")
    fynlo(
        capsys,
        "employee",
        "add",
        "--tenant",
        "t1",
        "--id",
        "s1",
        "--name",
        "Sam",
        "--role",
        "staff",
        "--wage",
        "2000",
        "--currency",
        "USD",
        "--json",
    )
    fynlo(
        capsys,
        "employee",
        "add",
        "--tenant",
        "t1",
        "--id",
        "m1",
        "--name",
        "Mo",
        "--role",
        "manager",
        "--json",
    )
    assert (
        fynlo(
            capsys, "employee", "set-pin", "--tenant", "t1", "--id", "s1", "--pin", "2468", "--json"
        )["pin_set"]
        is True
    )
    listed = fynlo(capsys, "employee", "list", "--tenant", "t1", "--json")["employees"]
    assert [(e["employee_id"], e["role"], e["pin_set"]) for e in listed] == [
        ("m1", "manager", False),
        ("s1", "staff", True),
    ]
    assert "2468" not in json.dumps(listed) and "argon2" not in json.dumps(listed)
    assert (
        main(
            [
                "employee",
                "add",
                "--tenant",
                "t1",
                "--id",
                "s1",
                "--name",
                "Again",
                "--role",
                "staff",
            ]
        )
        == 2
    )  # duplicate-employee, named on stderr
    # A California week, punched by the server's node (an import), Wednesday approved.
    settings = embedded_settings(tmp_path).with_(plugins=tuple(PLUGINS.split(",")))
    n = 0
    for day, hours in enumerate([10, 8, 13, 8, 8]):
        for kind, at in (("clock_in", 6), ("clock_out", 6 + hours)):
            n += 1
            args = {
                "employee_id": "s1",
                "week": WEEK,
                "week_start_ms": WEEK_START,
                "rules": "us-ca",
                "rounding": None,
                "punch_id": f"p{n}",
                "kind": kind,
                "at_ms": WEEK_START + day * 24 * HOUR_MS + at * HOUR_MS,
            }
            draft = Draft.command("timecards", timecard_id("s1", WEEK), "punch", args)
            run_admin(settings, partial(author_one, tenant="t1", draft=draft))
    run_admin(
        settings,
        lambda b: author_one(
            b,
            "t1",
            Draft.command(
                "timecards",
                timecard_id("s1", WEEK),
                "approve_day",
                {"day": 2, "decision": "approve"},
            ),
        ),
    )
    svg = tmp_path / "labour.svg"
    report = fynlo(
        capsys, "report", "labour", "--tenant", "t1", "--week", WEEK, "--json", "--svg", str(svg)
    )
    week = next(r for r in report["rows"] if r["day"] == "week")
    assert (week["regular_ms"], week["overtime_ms"], week["double_ms"], week["pending_ms"]) == (
        40 * HOUR_MS,
        4 * HOUR_MS,
        1 * HOUR_MS,
        2 * HOUR_MS,  # Monday's 2 h wait for approval
    )
    assert week["cost"] == 40 * 2000 + 4 * 3000 + 1 * 4000
    assert svg.read_text().startswith("<svg") and "Sam" in svg.read_text()
    csv_text = fynlo(capsys, "report", "labour", "--tenant", "t1", "--week", WEEK, "--csv")
    assert csv_text.splitlines()[0].startswith("employee_id,name,day,worked_ms")
    assert len(csv_text.splitlines()) == 1 + 5 + 1
    audit = fynlo(capsys, "audit", "--tenant", "t1", "--json")["ops"]
    assert {o["node_id"] for o in audit} == {"server"} and len(audit) == 2 + 1 + 1 + 10 + 1
    assert [o["reason"] for o in audit if o["status"] == "rejected"] == ["duplicate-employee"]
    assert fynlo(capsys, "audit", "--tenant", "t1", "--actor", "m1", "--json")["ops"] == []
