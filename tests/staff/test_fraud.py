"""Fraud checks of punches (protocol 20.7): the geofence's integer haversine against the
float formula, allow / flag / deny for the geofence and the IP allow-list through the real
engine on a server replica, offline punches flagged, and bad input refused by name."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.domains.staff import StaffPlugin
from fynlo_sync.domains.timeclock import TimeclockPlugin
from fynlo_sync.domains.timeclock.fraud import (
    FraudPolicy,
    address_allowed,
    distance_m,
    isqrt,
    judge,
    parse_location,
    parse_networks,
)
from fynlo_sync.domains.timeclock.settings import TimeclockSettings
from fynlo_sync.errors import SettingsError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.plugins import load_settings
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore
from fynlo_sync.testing import ManualClock
from tests.staff.conftest import WEEK_START, as_server, at, card, card_args

#: Trafalgar Square, and points about 100 m and 1 km from it.
VENUE = (51_508_039, -128_069)
NEAR = (51_508_900, -128_069)  # 95 m north
FAR = (51_517_000, -128_069)  # 996 m north
PREFIX = "FYNLO_TIMECLOCK_"


def _float_haversine(a: tuple[int, int], b: tuple[int, int]) -> float:
    la1, lo1, la2, lo2 = (math.radians(v / 1e6) for v in (*a, *b))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(math.sqrt(min(1.0, h)))


def test_the_integer_haversine_is_the_float_formula_floored() -> None:
    rng = random.Random(20)
    for i in range(400):
        a = (rng.randint(-90_000_000, 90_000_000), rng.randint(-180_000_000, 180_000_000))
        if i % 2:  # near points: the geofence's scale
            b = (
                max(-90_000_000, min(90_000_000, a[0] + rng.randint(-20_000, 20_000))),
                max(-180_000_000, min(180_000_000, a[1] + rng.randint(-20_000, 20_000))),
            )
        else:
            b = (rng.randint(-90_000_000, 90_000_000), rng.randint(-180_000_000, 180_000_000))
        exact = _float_haversine(a, b)
        assert exact - 1 < distance_m(a, b) <= exact + 1e-6 * max(1.0, exact), (a, b)
    assert distance_m(VENUE, VENUE) == 0
    assert distance_m(VENUE, NEAR) == 95 and distance_m(VENUE, FAR) == 996
    # across the antimeridian, and pole to pole (half the circumference)
    assert distance_m((0, 179_999_000), (0, -179_999_000)) == 222
    assert distance_m((90_000_000, 0), (-90_000_000, 0)) == 20_015_086


def test_isqrt_is_the_floor() -> None:
    for n in [0, 1, 2, 3, 4, 15, 16, 17, 10**40 - 1, 10**40, 2**127 + 5]:
        r = isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1)
    with pytest.raises(ValueError):
        isqrt(-1)


def test_the_allow_list_matches_v4_v6_and_v4_mapped_addresses() -> None:
    nets = parse_networks(["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "203.0.113.7"])
    assert address_allowed("10.20.30.40", nets)
    assert address_allowed("192.168.1.255", nets) and not address_allowed("192.168.2.1", nets)
    assert address_allowed("2001:db8:1::9", nets) and not address_allowed("2001:db9::1", nets)
    assert address_allowed("::ffff:10.0.0.1", nets)
    assert address_allowed("203.0.113.7", nets) and not address_allowed("203.0.113.8", nets)
    assert not address_allowed(None, nets) and not address_allowed("testclient", nets)


@pytest.mark.parametrize(
    ("policy", "location", "address", "offline", "expect"),
    [
        ("allow", FAR, None, False, ((), 996, None)),
        ("flag", NEAR, None, False, ((), 95, None)),
        ("flag", FAR, None, False, (("outside-geofence",), 996, None)),
        ("deny", FAR, None, False, (("outside-geofence",), 996, "outside-geofence")),
        ("deny", None, None, False, (("no-location",), None, "no-location")),
        ("flag", None, None, True, (("no-location",), None, None)),
    ],
)
def test_geofence_policies(
    policy: Any, location: Any, address: Any, offline: bool, expect: Any
) -> None:
    verdict = judge(
        FraudPolicy(venue=VENUE, radius_m=150, geofence=policy), location, address, offline=offline
    )
    assert (verdict.checks, verdict.distance_m, verdict.refused) == expect


@pytest.mark.parametrize(
    ("policy", "address", "offline", "expect"),
    [
        ("allow", "8.8.8.8", False, ((), None)),
        ("flag", "10.1.2.3", False, ((), None)),
        ("flag", "8.8.8.8", False, (("outside-network",), None)),
        ("deny", "8.8.8.8", False, (("outside-network",), "outside-network")),
        ("deny", None, False, (("outside-network",), "outside-network")),
        # offline: the address it arrived from says nothing; flagged, never refused
        ("deny", "8.8.8.8", True, (("network-unchecked",), None)),
        ("flag", "10.1.2.3", True, (("network-unchecked",), None)),
    ],
)
def test_network_policies(policy: Any, address: Any, offline: bool, expect: Any) -> None:
    rule = FraudPolicy(networks=parse_networks(["10.0.0.0/8"]), network=policy)
    verdict = judge(rule, None, address, offline=offline)
    assert (verdict.checks, verdict.refused) == expect


# ------------------------------------------------------------- through the engine (server)


def _server(env: dict[str, str], clock: ManualClock) -> ServerReplica:
    timeclock = TimeclockPlugin.from_env({PREFIX + k: v for k, v in env.items()})
    registry = conflict.registry([OrdersPlugin(), StaffPlugin(), timeclock])
    server = ServerReplica(MemoryServerStore(), registry, now_ms=clock)
    assert as_server(server, "employees", "s1", "add", {"name": "S1", "role": "staff"}) == "applied"
    return server


class Till:
    def __init__(self, server: ServerReplica, address: str | None, node: str = "till") -> None:
        self.server, self.address, self.node, self.seq = server, address, node, 0

    def punch(self, punch_id: str, kind: str, when: int, **extra: Any) -> Any:
        self.seq += 1
        op = Op(
            op_id=f"{self.node}-{self.seq}",
            node_id=self.node,
            seq=self.seq,
            hlc=to_wire(pack(when, 0)),
            base_seq=0,
            collection="timecards",
            record_id=card("s1"),
            kind="command",
            name="punch",
            args={**card_args("s1"), "punch_id": punch_id, "kind": kind, "at_ms": when, **extra},
            actor="s1",
        )
        pushed = self.server.push("t1", Batch.of(self.node, [op]), client_address=self.address)
        return pushed.outcomes[0]

    def punches(self) -> dict[str, Any]:
        record = self.server.store.load("t1", [("timecards", card("s1"))])
        return dict(record[("timecards", card("s1"))].fields["punches"])


def _loc(point: tuple[int, int]) -> dict[str, int]:
    return {"lat_e6": point[0], "lon_e6": point[1]}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=at(0, 1))


GEO = {"VENUE_LAT_E6": str(VENUE[0]), "VENUE_LON_E6": str(VENUE[1]), "RADIUS_M": "150"}


def test_geofence_flag_keeps_the_punch_marked_and_alerts(clock: ManualClock) -> None:
    till = Till(_server({**GEO, "GEOFENCE_POLICY": "flag"}, clock), None)
    assert till.punch("p1", "clock_in", at(0, 1), location=_loc(NEAR)).status == "applied"
    assert till.punch("p2", "clock_out", at(0, 1), location=_loc(FAR)).status == "applied"
    punches = till.punches()
    assert (punches["p1"]["checks"], punches["p1"]["distance_m"]) == ([], 95)
    assert (punches["p2"]["checks"], punches["p2"]["distance_m"]) == (["outside-geofence"], 996)
    assert punches["p2"]["location"] == _loc(FAR)
    record = till.server.store.load("t1", [("timecards", card("s1"))])[("timecards", card("s1"))]
    assert "outside-geofence:p2" in record.fields["alerts"]


def test_geofence_deny_refuses_far_and_missing_locations(clock: ManualClock) -> None:
    till = Till(_server({**GEO, "GEOFENCE_POLICY": "deny"}, clock), None)
    far = till.punch("p1", "clock_in", at(0, 1), location=_loc(FAR))
    assert (far.status, far.reason) == ("rejected", "outside-geofence")
    assert "996 m" in (far.detail or "")
    none = till.punch("p2", "clock_in", at(0, 1))
    assert (none.status, none.reason) == ("rejected", "no-location")
    assert till.punch("p3", "clock_in", at(0, 1), location=_loc(NEAR)).status == "applied"


def test_geofence_allow_records_the_distance_and_refuses_nothing(clock: ManualClock) -> None:
    till = Till(_server(GEO, clock), None)
    assert till.punch("p1", "clock_in", at(0, 1), location=_loc(FAR)).status == "applied"
    assert till.punch("p2", "clock_out", at(0, 1)).status == "applied"
    punches = till.punches()
    assert (punches["p1"]["checks"], punches["p1"]["distance_m"]) == ([], 996)
    assert punches["p2"]["location"] is None


@pytest.mark.parametrize("policy", ["flag", "deny"])
def test_ip_allow_list_policies_and_offline_punches(clock: ManualClock, policy: str) -> None:
    server = _server({"IP_ALLOW": "10.0.0.0/8,2001:db8::/32", "IP_POLICY": policy}, clock)
    inside, outside = Till(server, "10.9.8.7"), Till(server, "198.51.100.4", "till-2")
    assert inside.punch("p1", "clock_in", at(0, 1)).status == "applied"
    got = outside.punch("p2", "clock_out", at(0, 1) + 500)
    if policy == "deny":
        assert (got.status, got.reason) == ("rejected", "outside-network")
    else:
        assert got.status == "applied"
        assert inside.punches()["p2"]["checks"] == ["outside-network"]
    # made offline an hour ago: the address it arrives from is not the network it was made on
    clock.advance(60 * 60_000)
    late = outside.punch("p3", "clock_out" if policy == "deny" else "clock_in", at(0, 1) + 999)
    assert late.status == "applied"
    punches = inside.punches()
    assert punches["p1"]["checks"] == []
    assert punches["p3"]["checks"] == ["network-unchecked"]


def test_the_server_checks_nothing_on_a_terminal_or_for_its_own_ops(clock: ManualClock) -> None:
    """A terminal (no receive time) cannot check itself: a deny policy decides only on the
    server, which then answers with the refusal."""
    server = _server(
        {**GEO, "GEOFENCE_POLICY": "deny", "IP_ALLOW": "10.0.0.0/8", "IP_POLICY": "deny"}, clock
    )
    from fynlo_sync.plugins import CommandContext

    command = server.registry.command(server.registry.collection("timecards"), "punch")
    op = Op(
        op_id="x",
        node_id="till",
        seq=1,
        hlc=to_wire(pack(WEEK_START, 0)),
        base_seq=0,
        collection="timecards",
        record_id=card("s1"),
        kind="command",
        name="punch",
        args={},
        actor="s1",
    )
    args = {**card_args("s1"), "punch_id": "p1", "kind": "clock_in", "at_ms": at(0, 1)}
    patch = command(CommandContext(record=None, args=args, op=op, received_ms=None))
    assert patch["punches"]["p1"]["checks"] == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ({"lat_e6": "51508039", "lon_e6": 0}, "lat_e6 is an integer"),
        ({"lat_e6": 91_000_000, "lon_e6": 0}, "lat_e6 is an integer"),
        ({"lat_e6": 0, "lon_e6": -180_000_001}, "lon_e6 is an integer"),
        ({"lat_e6": 0}, "micro-degrees"),
        ({"lat_e6": 0, "lon_e6": 0, "acc": 5}, "micro-degrees"),
        ([51_508_039, -128_069], "micro-degrees"),
        ({"lat_e6": True, "lon_e6": 0}, "lat_e6 is an integer"),
    ],
)
def test_a_malformed_location_is_refused_by_name(
    clock: ManualClock, location: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_location(location)
    till = Till(_server({**GEO, "GEOFENCE_POLICY": "flag"}, clock), None)
    got = till.punch("p1", "clock_in", at(0, 1), location=location)
    assert (got.status, got.reason) == ("rejected", "invalid-argument")
    assert message in (got.detail or "")


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({"IP_ALLOW": "10.0.0.300/8"}, "IP_ALLOW", "'10.0.0.300/8' is not a CIDR block"),
        ({"IP_ALLOW": "10.0.0.1/8"}, "IP_ALLOW", "host bits set"),
        ({"IP_ALLOW": "10.0.0.0/33"}, "IP_ALLOW", "is not a CIDR block"),
        ({"IP_POLICY": "deny"}, "IP_POLICY", "needs FYNLO_TIMECLOCK_IP_ALLOW"),
        ({"IP_POLICY": "block", "IP_ALLOW": "10.0.0.0/8"}, "IP_POLICY", "Invalid enum value"),
        ({"GEOFENCE_POLICY": "flag"}, "GEOFENCE_POLICY", "needs the venue"),
        ({"VENUE_LAT_E6": "51.5", "VENUE_LON_E6": "0"}, "VENUE_LAT_E6", "int"),
        ({"VENUE_LAT_E6": "91000000", "VENUE_LON_E6": "0"}, "VENUE_LAT_E6", "<= 90000000"),
        ({"VENUE_LAT_E6": "0"}, "VENUE_LAT_E6", "set together"),
        ({"RADIUS_M": "0"}, "RADIUS_M", ">= 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    env: dict[str, str], variable: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(TimeclockSettings, PREFIX, {PREFIX + k: v for k, v in env.items()})
    assert info.value.extra["variable"] == PREFIX + variable


def test_float_coordinates_never_reach_the_command(clock: ManualClock) -> None:
    """Section 3: no float in the protocol; the batch itself is refused."""
    from fynlo_sync.errors import InvalidValueError

    till = Till(_server({**GEO, "GEOFENCE_POLICY": "flag"}, clock), None)
    with pytest.raises(InvalidValueError) as info:
        till.punch("p1", "clock_in", at(0, 1), location={"lat_e6": 51.5, "lon_e6": 0})
    assert info.value.extra["reason"] == "float"
