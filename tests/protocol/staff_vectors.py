"""Vectors of the time clock (docs/protocol.md section 20): ``timeclock_state.json`` (the
punch state table, and punch sequences with the shifts they derive) and ``overtime.json``
(rule sets as data: a week split by pay rate; rounding per entry and on the total)."""

from __future__ import annotations

import itertools
from typing import Any

from fynlo_sync.domains.timeclock.rules import (
    HOUR_MS,
    MINUTE_MS,
    RuleSet,
    overtime,
    round_duration,
    rule_set,
)
from fynlo_sync.domains.timeclock.shifts import derive_shifts, sequence_errors
from fynlo_sync.domains.timeclock.states import PUNCHES, STATES, next_state

__all__ = ["fraud_vectors", "overtime_vectors", "rules_to_json", "timeclock_vectors"]

H = HOUR_MS
#: Monday 2026-11-30 04:00 UTC.
START = 1_795_996_800_000 + 4 * H


def rules_to_json(rules: RuleSet) -> dict[str, Any]:
    return {
        "name": rules.name,
        "effective_from": rules.effective_from,
        "daily": [[t.after_min, t.rate_pct] for t in rules.daily],
        "weekly": [[t.after_min, t.rate_pct] for t in rules.weekly],
        "seventh_day": [[t.after_min, t.rate_pct] for t in rules.seventh_day],
    }


def _p(kind: str, hours: float, node: str = "a", **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "at_ms": START + round(hours * H),
        "node": node,
        "received_ms": extra.pop("received_ms", None),
        "paid": extra.pop("paid", False),
        "expected_min": extra.pop("expected_min", 0),
        "source": extra.pop("source", "punch"),
    }


SEQUENCES: list[tuple[str, dict[str, dict[str, Any]]]] = [
    (
        "a shift with an unpaid and a paid break",
        {
            "p1": _p("clock_in", 1),
            "p2": _p("break_start", 3, expected_min=30),
            "p3": _p("break_end", 3.5),
            "p4": _p("break_start", 6, paid=True, expected_min=15),
            "p5": _p("break_end", 6.25),
            "p6": _p("clock_out", 9),
        },
    ),
    (
        "a clock-out on another terminal pairs by event time, whatever the ids",
        {
            "z-in": _p("clock_in", 2, node="a"),
            "a-out": _p("clock_out", 10, node="b"),
        },
    ),
    ("an unmatched clock-out (its clock-in not synced yet)", {"o": _p("clock_out", 10, node="b")}),
    ("an open shift has no duration yet", {"i": _p("clock_in", 2)}),
    (
        "a break cut short",
        {
            "i": _p("clock_in", 1),
            "b": _p("break_start", 2, expected_min=30),
            "e": _p("break_end", 2.25),
            "o": _p("clock_out", 5),
        },
    ),
    (
        "the forgotten-punch close ends an open break",
        {
            "i": _p("clock_in", 18),
            "b": _p("break_start", 22, expected_min=30),
            "auto-i": _p("auto_out", 24, source="auto"),
        },
    ),
    (
        "a punch received late was made offline",
        {
            "i": _p("clock_in", 1, received_ms=START + 1 * H + 1000),
            "o": _p("clock_out", 3, received_ms=START + 5 * H),
        },
    ),
    (
        "same millisecond: clock-in ranks before the break",
        {
            "b": _p("break_start", 1, expected_min=0),
            "i": _p("clock_in", 1),
            "e": _p("break_end", 2),
            "o": _p("clock_out", 3),
        },
    ),
    (
        "a clock-out during a break is skipped until the break ends",
        {
            "i": _p("clock_in", 1),
            "b": _p("break_start", 2),
            "o": _p("clock_out", 3),
        },
    ),
    (
        "two shifts in a day",
        {
            "i1": _p("clock_in", 1),
            "o1": _p("clock_out", 4),
            "i2": _p("clock_in", 6),
            "o2": _p("clock_out", 9.5),
        },
    ),
    ("a shift over 24 h breaks the rules", {"i": _p("clock_in", 0), "o": _p("clock_out", 24.5)}),
]


def timeclock_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for state in STATES:
        for punch in PUNCHES:
            target = next_state(state, punch)
            out.append(
                {
                    "name": f"{state} + {punch}",
                    "state": state,
                    "punch": punch,
                    "allowed": target is not None,
                    "next": target,
                }
            )
    assert sum(v["allowed"] for v in out) == 6
    for name, punches in SEQUENCES:
        shifts = [s.to_json(START) for s in derive_shifts(punches)]
        out.append(
            {
                "name": name,
                "week_start_ms": START,
                "punches": punches,
                "expect": {"shifts": shifts, "errors": sorted(sequence_errors(punches))},
            }
        )
    out.append(dst_vector())
    first = next(v for v in out if v["name"] == "a shift with an unpaid and a paid break")
    shift = first["expect"]["shifts"][0]
    assert (shift["worked_ms"], shift["paid_break_ms"], shift["unpaid_break_ms"]) == (
        7.5 * H,
        15 * MINUTE_MS,
        30 * MINUTE_MS,
    )
    return out


def london_day_starts(monday: tuple[int, int, int]) -> list[int]:
    """The 04:00 cutoffs of a London workweek and the next Monday, UTC ms (tz database)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    first = datetime(*monday, 4, tzinfo=ZoneInfo("Europe/London"))
    return [int((first + timedelta(days=i)).timestamp() * 1000) for i in range(8)]


def dst_vector() -> dict[str, Any]:
    """London's clocks go back on Sunday 25 October 2026: Saturday's workday lasts 25 h, so
    a shift begun at 03:40 UTC on Sunday (03:40 local) still belongs to Saturday."""
    starts = london_day_starts((2026, 10, 19))
    assert [b - a for a, b in itertools.pairwise(starts)] == [24 * H] * 5 + [
        25 * H,
        24 * H,
    ]

    def p(kind: str, at: int) -> dict[str, Any]:
        return {
            "kind": kind,
            "at_ms": at,
            "node": "a",
            "received_ms": None,
            "paid": False,
            "expected_min": 0,
            "source": "punch",
        }

    sunday = starts[5] + 24 * H  # 24 h after Saturday's cutoff: Sunday 03:00 UTC, not a cutoff
    punches = {
        "i1": p("clock_in", starts[5] + 19 * H),
        "o1": p("clock_out", sunday + 30 * MINUTE_MS),
        "i2": p("clock_in", sunday + 40 * MINUTE_MS),
        "o2": p("clock_out", sunday + 2 * H),
        "i3": p("clock_in", starts[6] + 6 * H),
        "o3": p("clock_out", starts[6] + 8 * H),
    }
    shifts = [s.to_json(starts[0], starts) for s in derive_shifts(punches)]
    assert [s["day"] for s in shifts] == [5, 5, 6]
    return {
        "name": "a week with a DST change: its day_starts_ms decide the workday",
        "week_start_ms": starts[0],
        "day_starts_ms": starts,
        "punches": punches,
        "expect": {"shifts": shifts, "errors": sorted(sequence_errors(punches))},
    }


WEEKS: list[tuple[str, str, list[float], tuple[float, float, float]]] = [
    (
        "California: Mon 10, Tue 8, Wed 13, Thu 8, Fri 8",
        "us-ca",
        [10, 8, 13, 8, 8, 0, 0],
        (40, 6, 1),
    ),
    ("US federal: the same week", "us-federal", [10, 8, 13, 8, 8, 0, 0], (40, 7, 0)),
    ("California: one 13-hour day", "us-ca", [13, 0, 0, 0, 0, 0, 0], (8, 4, 1)),
    ("California: the seventh consecutive day", "us-ca", [5, 5, 5, 5, 5, 5, 10], (30, 8, 2)),
    ("California: a day off means no seventh day", "us-ca", [5, 5, 5, 5, 5, 0, 10], (33, 2, 0)),
    ("California: six 8-hour days", "us-ca", [8, 8, 8, 8, 8, 8, 0], (40, 8, 0)),
    (
        "California: five 9-hour days (daily overtime not counted again weekly)",
        "us-ca",
        [9, 9, 9, 9, 9, 0, 0],
        (40, 5, 0),
    ),
    ("California: seven 8-hour days", "us-ca", [8, 8, 8, 8, 8, 8, 8], (40, 16, 0)),
    ("US federal: 45.5 hours", "us-federal", [9.5, 9, 9, 9, 9, 0, 0], (40, 5.5, 0)),
    ("UK: no statutory premium", "uk", [12, 12, 12, 12, 12, 0, 0], (60, 0, 0)),
]

ROUNDING: list[tuple[str, int, str, list[list[int]]]] = [
    ("three 7-minute entries, 15 min per entry", 15, "entry", [[7, 7, 7]]),
    ("three 7-minute entries, 15 min on the total", 15, "total", [[7, 7, 7]]),
    ("7 min 30 s rounds up (ties up)", 15, "entry", [[7.5]]),  # type: ignore[list-item]
    ("6-minute steps per entry", 6, "entry", [[2, 3, 9]]),
    ("6-minute steps on the total", 6, "total", [[2, 3, 9]]),
    ("5-minute steps, a day each", 5, "total", [[482], [2], [0], [3], [], [], []]),
]


def overtime_vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, rules_name, hours, (regular, ot, dt) in WEEKS:
        rules = rule_set(rules_name, "2026-11-30")
        assert rules is not None
        days = [round(h * H) for h in hours]
        week = overtime(days, rules)
        got = (week.total(100) / H, week.total(150) / H, week.total(200) / H)
        if got != (regular, ot, dt):
            raise AssertionError(f"{name}: {got}")
        out.append(
            {
                "name": name,
                "rules": rules_to_json(rules),
                "days_ms": days,
                "expect": {
                    "days": [
                        {str(r): ms for r, ms in sorted(d.by_rate.items())} for d in week.days
                    ],
                    "total": {str(r): week.total(r) for r in (100, 150, 200)},
                },
            }
        )
    for name, step, apply, entries_min in ROUNDING:
        entries = [[round(m * MINUTE_MS) for m in day] for day in entries_min]
        if apply == "entry":
            days = [sum(round_duration(e, step) for e in day) for day in entries]
        else:
            days = [round_duration(sum(day), step) for day in entries]
        out.append(
            {
                "name": name,
                "rounding": {"step_min": step, "apply": apply},
                "entries_ms": entries,
                "expect": {"days_ms": days},
            }
        )
    by = {v["name"]: v for v in out}
    assert by["three 7-minute entries, 15 min per entry"]["expect"]["days_ms"] == [0]
    assert by["three 7-minute entries, 15 min on the total"]["expect"]["days_ms"] == [
        15 * MINUTE_MS
    ]
    return out


# ------------------------------------------------------------ timeclock_fraud.json (20.7)

VENUE = {"lat_e6": 51_508_039, "lon_e6": -128_069}
NEAR = {"lat_e6": 51_508_900, "lon_e6": -128_069}
FAR = {"lat_e6": 51_517_000, "lon_e6": -128_069}
#: 150.2 m from the venue: 150 whole metres, so inside a 150 m radius (the rule floors).
EDGE = {"lat_e6": 51_509_390, "lon_e6": -128_069}

DISTANCES: list[tuple[str, tuple[int, int], tuple[int, int]]] = [
    ("the same point", (51_508_039, -128_069), (51_508_039, -128_069)),
    ("95 m north", (51_508_039, -128_069), (51_508_900, -128_069)),
    ("996 m north", (51_508_039, -128_069), (51_517_000, -128_069)),
    ("1 micro-degree of latitude", (0, 0), (1, 0)),
    ("London to Paris", (51_507_400, -127_800), (48_856_600, 2_352_200)),
    ("across the antimeridian", (0, 179_999_000), (0, -179_999_000)),
    ("antipodes on the equator", (0, 0), (0, 180_000_000)),
    ("pole to pole", (90_000_000, 0), (-90_000_000, 0)),
    ("Sydney to New York", (-33_868_800, 151_209_300), (40_712_800, -74_006_000)),
    ("east-west near the pole", (89_999_000, -90_000_000), (89_999_000, 90_000_000)),
]

NETWORKS: list[tuple[str, list[str], str | None, bool]] = [
    ("inside an IPv4 block", ["10.0.0.0/8"], "10.20.30.40", True),
    ("outside every IPv4 block", ["10.0.0.0/8", "192.168.1.0/24"], "192.168.2.1", False),
    ("the last address of a /24", ["192.168.1.0/24"], "192.168.1.255", True),
    ("a bare address is one host", ["203.0.113.7"], "203.0.113.7", True),
    ("the next host is outside it", ["203.0.113.7"], "203.0.113.8", False),
    ("inside an IPv6 block", ["2001:db8::/32"], "2001:db8:1::9", True),
    ("outside an IPv6 block", ["2001:db8::/32"], "2001:db9::1", False),
    ("IPv4 mapped into IPv6 counts as IPv4", ["10.0.0.0/8"], "::ffff:10.0.0.1", True),
    ("an IPv4 block never holds an IPv6 address", ["0.0.0.0/0"], "::1", False),
    ("an address that does not parse is in none", ["0.0.0.0/0"], "testclient", False),
    ("no address is in none", ["0.0.0.0/0"], None, False),
    ("/0 holds every IPv4 address", ["0.0.0.0/0"], "198.51.100.4", True),
]

JUDGED: list[tuple[str, dict[str, Any], dict[str, int] | None, str | None, bool]] = [
    ("allow checks nothing, the distance is kept", {"geofence": "allow"}, FAR, None, False),
    ("flag: inside the radius", {"geofence": "flag"}, NEAR, None, False),
    ("flag: outside the radius is marked", {"geofence": "flag"}, FAR, None, False),
    ("deny: outside the radius is refused", {"geofence": "deny"}, FAR, None, False),
    ("deny: 150 m on a 150 m radius is inside", {"geofence": "deny"}, EDGE, None, False),
    ("deny: no location is refused", {"geofence": "deny"}, None, None, False),
    ("flag: no location, made offline", {"geofence": "flag"}, None, None, True),
    ("ip flag: inside the allow-list", {"network": "flag"}, None, "10.1.2.3", False),
    ("ip flag: outside is marked", {"network": "flag"}, None, "8.8.8.8", False),
    ("ip deny: outside is refused", {"network": "deny"}, None, "8.8.8.8", False),
    (
        "ip deny: offline is never refused on its network",
        {"network": "deny"},
        None,
        "8.8.8.8",
        True,
    ),
    (
        "both deny: the geofence is named first",
        {"geofence": "deny", "network": "deny"},
        FAR,
        "8.8.8.8",
        False,
    ),
    (
        "geofence flag, ip deny offline: two marks, no refusal",
        {"geofence": "flag", "network": "deny"},
        FAR,
        "8.8.8.8",
        True,
    ),
]


def fraud_vectors() -> list[dict[str, Any]]:
    from fynlo_sync.domains.timeclock.fraud import (
        address_allowed,
        distance_m,
        judge,
        parse_location,
        parse_networks,
        policy_from,
    )

    out: list[dict[str, Any]] = []
    for name, a, b in DISTANCES:
        out.append(
            {
                "name": f"distance: {name}",
                "a": {"lat_e6": a[0], "lon_e6": a[1]},
                "b": {"lat_e6": b[0], "lon_e6": b[1]},
                "expect": {"distance_m": distance_m(a, b)},
            }
        )
    for name, blocks, address, allowed in NETWORKS:
        got = address_allowed(address, parse_networks(blocks))
        if got is not allowed:
            raise AssertionError(f"{name}: {got}")
        out.append(
            {
                "name": f"network: {name}",
                "ip_allow": blocks,
                "address": address,
                "expect": {"allowed": got},
            }
        )
    for name, rules, location, address, offline in JUDGED:
        policy = {"venue": VENUE, "radius_m": 150, "ip_allow": ["10.0.0.0/8"], **rules}
        verdict = judge(policy_from(policy), parse_location(location), address, offline=offline)
        out.append(
            {
                "name": f"judge: {name}",
                "policy": policy,
                "location": location,
                "address": address,
                "offline": offline,
                "expect": verdict.to_json(),
            }
        )
    by = {v["name"]: v for v in out}
    assert by["judge: deny: 150 m on a 150 m radius is inside"]["expect"]["distance_m"] == 150
    assert (
        by["judge: deny: outside the radius is refused"]["expect"]["refused"] == "outside-geofence"
    )
    return out
