"""Revenue and settlement from the ledger: the pure reports, and `fynlo report` against a
real server's database (embedded SQLite and PostgreSQL), with its picture."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.domains.payments.ledger import posting_sets
from fynlo_sync.domains.payments.render import axis_step, revenue_svg
from fynlo_sync.domains.payments.reports import revenue, settlement, tips
from fynlo_sync.domains.payments.till import Till
from fynlo_sync.store import SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings
from server.testing import embedded_settings, run_in_thread
from tests.payments.fixtures import attempt_in, order_with, payments_registry

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = "fynlo_sync.domains.orders:OrdersPlugin,fynlo_sync.domains.payments:PaymentsPlugin"
DAY = 86_400_000


def test_revenue_and_settlement_rows() -> None:
    cash = attempt_in("captured", "cash") | {
        "captured": 2000,
        "change": 900,
        "tendered": 2000,
        "fees": {
            "processing": 0,
            "platform": 10,
            "platform_bp": 100,
            "rounding": "half-up",
            "day": "2023-11-14",
        },
    }
    order = order_with({"a1": attempt_in("refunded_partial"), "a2": cash})
    sets = posting_sets("o-1", order.fields)
    rows = {r["method"]: r for r in revenue(sets, "2023-11-14", "2023-11-14")}
    assert rows["card"] == {
        "day": "2023-11-14",
        "method": "card",
        "currency": "GBP",
        "payments": 1,
        "collected": 1100,
        "tips": 100,
        "processing_fee": 35,
        "platform_fee": 10,
        "refunds": 200,
        "net": 755,
    }
    assert rows["cash"]["collected"] == 1100 and rows["cash"]["net"] == 990
    settled = {r["method"]: r["settled"] for r in settlement(sets, "2023-11-14", "2023-11-14")}
    assert settled == {"card": 865, "cash": 1100}
    assert revenue(sets, "2023-11-15", "2023-12-31") == []


def test_the_picture_has_one_bar_per_day_and_method() -> None:
    rows = [
        {"day": "2026-01-01", "method": "cash", "currency": "GBP", "collected": 500, "refunds": 0},
        {
            "day": "2026-01-01",
            "method": "card",
            "currency": "GBP",
            "collected": 1500,
            "refunds": 500,
        },
        {"day": "2026-01-02", "method": "card", "currency": "GBP", "collected": 800, "refunds": 0},
    ]
    svg = ET.fromstring(revenue_svg(rows))
    bars = [
        e.attrib
        for e in svg.iter("{http://www.w3.org/2000/svg}rect")
        if e.attrib.get("class") == "bar"
    ]
    assert [(b["data-day"], b["data-method"], b["data-value"]) for b in bars] == [
        ("2026-01-01", "cash", "500"),
        ("2026-01-01", "card", "1000"),
        ("2026-01-02", "card", "800"),
    ]
    heights = {(b["data-day"], b["data-method"]): float(b["height"]) for b in bars}
    assert heights[("2026-01-01", "card")] == pytest.approx(
        2 * heights[("2026-01-01", "cash")], abs=0.2
    )


def test_the_axis_steps_are_round_and_reach_the_highest_bar() -> None:
    assert [axis_step(top) for top in (1, 5, 6, 80912, 100000, 100001, 3)] == [
        1,
        1,
        2,
        20000,
        20000,
        50000,
        1,
    ]
    nice = sorted(m * 10**k for m in (1, 2, 5) for k in range(6))
    for top in range(1, 5000):
        step = axis_step(top)
        assert step in nice and 5 * step >= top
        # no smaller round step would do
        assert all(5 * s < top for s in nice if s < step)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    if request.param == "sqlite":
        settings = embedded_settings(tmp_path / "server")
    else:
        import secrets

        settings = Settings(
            database_url=request.getfixturevalue("postgres_session_url"),
            secret_key=secrets.token_urlsafe(32),
        )
    with run_in_thread(settings, registry=payments_registry()) as url:
        yield url, settings


def fynlo(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "FYNLO_PLUGINS": PLUGINS}
    return subprocess.run(
        [sys.executable, "-m", "fynlo_sync.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_fynlo_report_reads_the_tenants_payments(server: Any, tmp_path: Path) -> None:
    url, settings = server
    tenant = admin.create_tenant(settings, "test", "t-report")
    link = HttpTransport.enroll(url, admin.enroll_device(settings, tenant, None).enrollment_code)
    clock = ManualClock(1_700_000_000_000)
    t = Terminal(
        SqliteTerminalStore(tmp_path / "till.db", link.node_id),
        payments_registry(),
        link,
        wall=clock,
        rng=random.Random(1),
    )
    ids = (f"id-{k}" for k in itertools.count())
    till = Till(t, "drawer-1", lambda: next(ids))
    try:
        till.open_drawer(5000, "GBP")
        for day in range(2):
            order_id = f"o{day}"
            t.command("orders", order_id, "open", {"currency": "GBP"})
            t.command(
                "orders",
                order_id,
                "add_line",
                {"line_id": "l", "item": "x", "qty": 1, "unit_price": 2000},
            )
            cash = till.take_cash(order_id, 1000, 2000, tip=100, employee="emp-a")
            card = till.start(order_id, "card", 1000, tip=200, employee=f"emp-{day}")
            for step in ("submit", "authorise", "capture"):
                t.command("orders", order_id, f"payment_{step}", {"attempt_id": card})
            # The till's clock is in 2023, years behind the server's: the server finds
            # its ops made offline (section 19.4), so a refund needs a manager.
            till.refund(order_id, cash, 300, approved_by="mgr-1")
            clock.advance(DAY)
        t.sync()
        done = fynlo(
            settings,
            "report",
            "revenue",
            "--tenant",
            tenant,
            "--json",
            "--svg",
            str(tmp_path / "revenue.svg"),
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        # The server's ledger effect writes the sets; any not written yet are derived.
        sets = report["posting_sets"]
        assert sets["written"] + sets["pending"] == 6, sets
        assert [
            (r["day"], r["method"], r["collected"], r["refunds"], r["tips"]) for r in report["rows"]
        ] == [
            ("2023-11-14", "card", 1200, 0, 200),
            ("2023-11-14", "cash", 1100, 300, 100),
            ("2023-11-15", "card", 1200, 0, 200),
            ("2023-11-15", "cash", 1100, 300, 100),
        ]
        assert report["platform_revenue"] == 40  # 1 % of the non-tip 1000, four payments
        assert ET.parse(tmp_path / "revenue.svg").getroot().tag.endswith("svg")
        one_day = fynlo(
            settings,
            "report",
            "settlement",
            "--tenant",
            tenant,
            "--csv",
            "--from",
            "2023-11-15",
            "--to",
            "2023-11-15",
        )
        assert one_day.returncode == 0, one_day.stderr
        rows = list(csv.DictReader(io.StringIO(one_day.stdout)))
        assert [(r["method"], r["settled"]) for r in rows] == [("card", "1165"), ("cash", "800")]
        owed = fynlo(settings, "report", "tips", "--tenant", tenant, "--json")
        assert owed.returncode == 0, owed.stderr
        by_employee = json.loads(owed.stdout)
        assert [(r["day"], r["employee"], r["tips"]) for r in by_employee["rows"]] == [
            ("2023-11-14", "emp-0", 200),
            ("2023-11-14", "emp-a", 100),
            ("2023-11-15", "emp-1", 200),
            ("2023-11-15", "emp-a", 100),
        ]
        collected = sum(o.fields["tips"] for o in t.records("orders"))
        assert by_employee["tips_total"] == collected == 600
    finally:
        link.close()


def test_tips_per_employee_add_up_to_the_tips_collected() -> None:
    """The tips report reads the tips:<employee> accounts only; over any set of orders it
    adds up to the orders' tips (what was collected as tips) and to the revenue report's
    tips. A reversed payment takes its tip back."""
    rng = random.Random(7)
    employees = ["emp-1", "emp-2", None]
    orders: dict[str, dict[str, Any]] = {}
    for k in range(40):
        attempts = {}
        for j in range(rng.randint(1, 3)):
            method = rng.choice(["cash", "card", "open_banking"])
            state = rng.choice(["captured", "refunded_partial", "refunded", "failed"])
            a = attempt_in(state, method) | {
                "tip": rng.randint(0, 300),
                "employee": rng.choice(employees),
            }
            a["captured"] = a["amount"] + a["tip"] if a["captured"] else 0
            if state == "failed" and method != "cash" and rng.random() < 0.5:
                a |= {
                    "captured": a["amount"] + a["tip"],
                    "fees": attempt_in("captured")["fees"],
                    "reversed": {"day": "2023-11-15", "by": "till-a"},
                }
            if state == "refunded":
                a["refunded"] = a["captured"]
                a["refunds"] = {"r1": {**a["refunds"]["r1"], "amount": a["captured"]}}
            attempts[f"a{j}"] = a
        orders[f"o{k}"] = order_with(attempts).fields
    sets = [s for order_id, fields in orders.items() for s in posting_sets(order_id, fields)]
    rows = tips(sets, "0000-01-01", "9999-12-31")
    collected = sum(fields["tips"] for fields in orders.values())
    assert collected > 0
    assert sum(r["tips"] for r in rows) == collected
    assert sum(r["tips"] for r in revenue(sets, "0000-01-01", "9999-12-31")) == collected
    for employee in ("emp-1", "emp-2", "pool"):
        owed = sum(
            a["tip"]
            for fields in orders.values()
            for a in fields["payments"].values()
            if (a["employee"] or "pool") == employee
            and a["state"] in ("captured", "refunded_partial", "refunded")
        )
        assert sum(r["tips"] for r in rows if r["employee"] == employee) == owed
    assert {r["employee"] for r in rows} <= {"emp-1", "emp-2", "pool"}
