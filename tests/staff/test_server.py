"""Staff against a real server over a socket: employees from the CLI's functions, PIN
sign-in with its lockout curve measured, forbidden ops, the audit by actor."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fynlo_sync.errors import FynloError
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.staff import (
    add_employee,
    deactivate_employee,
    list_employees,
    run_admin,
    set_employee_pin,
)
from server.testing import embedded_settings, run_in_thread

PLUGINS = (
    "fynlo_sync.domains.orders:OrdersPlugin",
    "fynlo_sync.domains.staff:StaffPlugin",
    "fynlo_sync.domains.timeclock:TimeclockPlugin",
)
MINUTE = 60_000
DAY = 24 * 60 * MINUTE


@pytest.fixture
def served(tmp_path: Path) -> Any:
    settings = embedded_settings(tmp_path, plugins=PLUGINS)
    clock = ManualClock(start_ms=time.time_ns() // 1_000_000)
    admin.create_tenant(settings, "Cafe", "t1")
    for employee, role in (("o1", "owner"), ("m1", "manager"), ("s1", "staff")):
        run_admin(
            settings,
            partial(add_employee, tenant="t1", employee_id=employee, name=employee, role=role),
        )
    run_admin(settings, lambda b: set_employee_pin(b, "t1", "s1", "4821", clock()))
    with run_in_thread(settings, wall=clock) as url:
        yield settings, clock, url


def _link(settings: Any, url: str, node: str) -> HttpTransport:
    return HttpTransport.enroll(url, admin.enroll_device(settings, "t1", node).enrollment_code)


def _try(link: HttpTransport, employee: str, pin: str) -> str:
    try:
        link.post("/v1/plugins/staff/sign-in", {"employee_id": employee, "pin": pin})
        return "ok"
    except FynloError as exc:
        return exc.code


def test_employees_sync_without_secrets_and_sign_in_works(served: Any) -> None:
    settings, clock, url = served
    rows = run_admin(settings, lambda b: list_employees(b, "t1"))
    s1 = next(r for r in rows if r["employee_id"] == "s1")
    assert s1["pin_set"] is True and s1["role"] == "staff"
    assert not any("hash" in k or k == "pin" for r in rows for k in r)
    link = _link(settings, url, "till-1")
    got = link.post("/v1/plugins/staff/sign-in", {"employee_id": "s1", "pin": "4821"})
    assert got["permissions"] == ["timeclock.punch"]
    assert got["offline_verifier"].startswith("$argon2id$")
    assert got["offline_expires_ms"] == clock() + 12 * 3600 * 1000
    assert _try(link, "s1", "0000") == "pin-refused"
    assert _try(link, "nobody", "1234") == "pin-refused"
    run_admin(settings, lambda b: deactivate_employee(b, "t1", "s1"))
    assert _try(link, "s1", "4821") == "pin-refused"


def test_the_lockout_curve_against_the_server(served: Any) -> None:
    """A guesser who retries the moment the server allows (it waits the ``retry_after_ms``
    each refusal names), for two days of virtual time."""
    settings, clock, url = served
    link = _link(settings, url, "till-1")
    start, allowed, locked = clock(), list[int](), 0
    pins = (f"{n:04d}" for n in range(10_000) if f"{n:04d}" != "4821")
    while clock() - start < 2 * DAY:
        try:
            link.post("/v1/plugins/staff/sign-in", {"employee_id": "s1", "pin": next(pins)})
            raise AssertionError("a guess was right")
        except FynloError as exc:
            if exc.code == "pin-refused":
                allowed.append(clock() - start)
                if len(allowed) == 10:
                    # The rightful PIN is refused while locked: the lock is on the employee.
                    assert _try(link, "s1", "4821") == "pin-locked"
                continue
            assert exc.code == "pin-locked"
            locked += 1
            clock.advance(exc.extra["retry_after_ms"])
    first_day = [t for t in allowed if t < DAY]
    assert len(first_day) == 10  # odds for a 4-digit PIN: 10 / 10,000 = 0.1% a day
    assert first_day == [0, 0, 0] + [30_000 * (2**k - 1) for k in range(1, 8)]
    assert len(allowed) == 20
    print(
        f"lockout curve: {len(first_day)} wrong PINs allowed in day 1, {len(allowed)} in 2 "
        f"days, {locked} refused as locked; day-1 times (s): {[t // 1000 for t in first_day]}"
    )
    # A manager's reset (a new PIN) clears it.
    run_admin(settings, lambda b: set_employee_pin(b, "t1", "s1", "5555", clock()))
    assert _try(link, "s1", "5555") == "ok"


def test_offline_failures_reported_at_sync_count_into_the_lockout(served: Any) -> None:
    settings, clock, url = served
    link = _link(settings, url, "till-1")
    now = clock()
    got = link.post(
        "/v1/plugins/staff/failures",
        {"failures": [{"employee_id": "s1", "at_ms": now - k * 1000} for k in range(10)]},
    )
    assert got == {"counted": 10}
    assert _try(link, "s1", "4821") == "pin-locked"


def test_spraying_one_pin_across_employees_locks_the_device(served: Any) -> None:
    settings, clock, url = served
    staff = [f"e{k}" for k in range(6)]
    for employee in staff:
        run_admin(
            settings,
            partial(add_employee, tenant="t1", employee_id=employee, name=employee, role="staff"),
        )
        run_admin(
            settings,
            partial(
                set_employee_pin, tenant="t1", employee_id=employee, pin="7777", now_ms=clock()
            ),
        )
    link = _link(settings, url, "till-2")
    answers = []
    for k in range(60):  # ten hours, one guess every ten minutes, round the six of them
        answers.append(_try(link, staff[k % 6], "1234"))
        clock.advance(10 * MINUTE)
    # Each employee would allow 10 a day (60 in all); the device's own back-off and its
    # 30-a-day cap bind first.
    assert 0 < answers.count("pin-refused") <= 30 and "pin-locked" in answers
    assert _try(link, "e0", "7777") == "pin-locked"  # the device is locked, for everyone
    assert _try(_link(settings, url, "till-3"), "e0", "7777") == "ok"


def test_terminal_sign_in_online_then_offline_with_lockout_reported_and_timeout(
    served: Any, tmp_path: Path
) -> None:
    import random

    import conflict
    from fynlo_sync.client import Terminal
    from fynlo_sync.domains.orders import OrdersPlugin
    from fynlo_sync.domains.staff import StaffPlugin
    from fynlo_sync.domains.timeclock import TimeclockPlugin
    from fynlo_sync.staff_terminal import OfflinePinError, TerminalSignIn
    from fynlo_sync.store import SqliteTerminalStore
    from server.testing import free_port

    settings, clock, url = served
    link = _link(settings, url, "till-9")
    registry = conflict.registry([OrdersPlugin(), StaffPlugin(), TimeclockPlugin()])
    terminal = Terminal(
        SqliteTerminalStore(tmp_path / "till.db", "till-9"),
        registry,
        link,
        wall=clock,
        rng=random.Random(9),
    )
    terminal.sync()
    signin = TerminalSignIn(terminal, link, clock)
    signin.sign_in("s1", "4821")
    assert terminal.actor == "s1"
    signin.sign_out()
    # The internet goes down: a real connection refused, not a stand-in.
    down = HttpTransport(f"http://127.0.0.1:{free_port()}")
    down.tokens = link.tokens
    signin.transport = down
    for _ in range(3):
        with pytest.raises(OfflinePinError):
            signin.sign_in("s1", "1111")
    with pytest.raises(OfflinePinError, match="try again"):
        signin.sign_in("s1", "4821")  # locked locally, as on the server
    clock.advance(MINUTE)
    assert signin.sign_in("s1", "4821").employee_id == "s1"
    with pytest.raises(OfflinePinError, match="not signed in here lately"):
        signin.sign_in("m1", "0000")
    # The session times out after the idle limit (300 s by default).
    clock.advance(299_000)
    signin.touch()
    assert terminal.actor == "s1"
    clock.advance(300_000)
    signin.touch()
    assert terminal.actor is None
    # Back online: the three offline failures count on the server.
    signin.transport = link
    assert signin.report_failures() == 3
    for _ in range(7):
        assert _try(link, "s1", "9999") in ("pin-refused", "pin-locked")
        clock.advance(2 * 3_600_000)
    assert _try(link, "s1", "4821") == "pin-locked"  # 3 offline + 7 online = 10 today
