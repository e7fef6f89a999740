"""Our implementation against timeclock_state.json and overtime.json (the files, as read)."""

from __future__ import annotations

from typing import Any

import pytest

from fynlo_sync.domains.timeclock.rules import RuleSet, Tier, overtime, round_duration
from fynlo_sync.domains.timeclock.shifts import derive_shifts, sequence_errors
from fynlo_sync.domains.timeclock.states import PUNCHES, STATES, next_state
from tests.protocol.vectors import load

TIMECLOCK = load("timeclock_state.json")
OVERTIME = load("overtime.json")


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


@pytest.mark.parametrize("vector", TIMECLOCK, ids=_ids(TIMECLOCK))
def test_timeclock_state(vector: dict[str, Any]) -> None:
    if "punch" in vector:
        assert next_state(vector["state"], vector["punch"]) == vector["next"]
        assert vector["allowed"] == (vector["next"] is not None)
        return
    starts = vector.get("day_starts_ms")
    shifts = [s.to_json(vector["week_start_ms"], starts) for s in derive_shifts(vector["punches"])]
    assert shifts == vector["expect"]["shifts"]
    assert sorted(sequence_errors(vector["punches"])) == vector["expect"]["errors"]


def test_the_state_vectors_cover_every_pair() -> None:
    pairs = {(v["state"], v["punch"]) for v in TIMECLOCK if "punch" in v}
    assert pairs == {(s, p) for s in STATES for p in PUNCHES}


def _rules(raw: dict[str, Any]) -> RuleSet:
    def tiers(key: str) -> tuple[Tier, ...]:
        return tuple(Tier(a, r) for a, r in raw[key])

    return RuleSet(
        raw["name"], raw["effective_from"], tiers("daily"), tiers("weekly"), tiers("seventh_day")
    )


@pytest.mark.parametrize("vector", OVERTIME, ids=_ids(OVERTIME))
def test_overtime(vector: dict[str, Any]) -> None:
    if "rounding" in vector:
        step, apply = vector["rounding"]["step_min"], vector["rounding"]["apply"]
        days = [
            sum(round_duration(e, step) for e in day)
            if apply == "entry"
            else round_duration(sum(day), step)
            for day in vector["entries_ms"]
        ]
        assert days == vector["expect"]["days_ms"]
        return
    week = overtime(vector["days_ms"], _rules(vector["rules"]))
    assert [{str(r): ms for r, ms in d.by_rate.items()} for d in week.days] == vector["expect"][
        "days"
    ]
    assert {str(r): week.total(r) for r in (100, 150, 200)} == vector["expect"]["total"]


FRAUD = load("timeclock_fraud.json")


@pytest.mark.parametrize("vector", FRAUD, ids=_ids(FRAUD))
def test_fraud(vector: dict[str, Any]) -> None:
    from fynlo_sync.domains.timeclock.fraud import (
        address_allowed,
        distance_m,
        judge,
        parse_location,
        parse_networks,
        policy_from,
    )

    if "a" in vector:
        a, b = vector["a"], vector["b"]
        got = distance_m((a["lat_e6"], a["lon_e6"]), (b["lat_e6"], b["lon_e6"]))
        assert got == vector["expect"]["distance_m"]
    elif "ip_allow" in vector:
        allowed = address_allowed(vector["address"], parse_networks(vector["ip_allow"]))
        assert allowed is vector["expect"]["allowed"]
    else:
        verdict = judge(
            policy_from(vector["policy"]),
            parse_location(vector["location"]),
            vector["address"],
            offline=vector["offline"],
        )
        assert verdict.to_json() == vector["expect"]
