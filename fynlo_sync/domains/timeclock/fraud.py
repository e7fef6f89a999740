"""Fraud checks of a punch, pure: the venue's geofence and the IP allow-list (protocol 20.7).

Coordinates are integer micro-degrees (no float ever reaches the protocol), and the
haversine distance is computed in integer fixed point (:data:`SCALE` = 10^20) with series
whose every step is spelled out in ``docs/protocol.md`` 20.7, so the JavaScript port (with
``BigInt``) gets the same metres to the unit, and a punch exactly on the radius is decided
alike everywhere. No ``math`` import: the pure core's float functions differ by an ulp
between C libraries and JavaScript engines.

The IP allow-list is a list of CIDR blocks (``ipaddress``, the standard library's parser:
pure, no I/O). Each check has a policy: ``allow`` (not checked), ``flag`` (the punch is
kept and marked for a manager) or ``deny`` (the punch is refused). A punch received more
than two minutes after it was made was made offline: the address it arrived from says
nothing about the network it was made on, so it is flagged ``network-unchecked``, never
refused on its network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "EARTH_RADIUS_M",
    "POLICIES",
    "SCALE",
    "FraudPolicy",
    "Network",
    "Verdict",
    "address_allowed",
    "asin_fixed",
    "distance_m",
    "isqrt",
    "judge",
    "parse_location",
    "parse_networks",
    "policy_from",
    "sin_fixed",
]

Policy = Literal["allow", "flag", "deny"]
POLICIES: Final = ("allow", "flag", "deny")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The fixed point: 1.0 is 10^20.
SCALE: Final = 10**20
#: pi * 10^20, truncated.
PI_FIXED: Final = 314159265358979323846
#: The mean Earth radius the haversine distance uses, metres.
EARTH_RADIUS_M: Final = 6_371_000
MAX_LAT_E6: Final = 90_000_000
MAX_LON_E6: Final = 180_000_000


def isqrt(n: int) -> int:
    """floor(sqrt(n)) of an integer n >= 0 (Newton's method from n)."""
    if n < 0:
        raise ValueError("isqrt of a negative number")
    if n == 0:
        return 0
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


def sin_fixed(x: int) -> int:
    """sin(x) for 0 <= x <= pi/2, both in fixed point: the Taylor series, each term from the
    last as ``term * x2 // SCALE // ((2k) * (2k + 1))``, until a term is 0."""
    x2 = x * x // SCALE
    term = total = x
    k = 1
    while term:
        term = term * x2 // SCALE // ((2 * k) * (2 * k + 1))
        total = total - term if k % 2 else total + term
        k += 1
    return total


def asin_fixed(s: int) -> int:
    """asin(s) for 0 <= s <= 1 in fixed point. Above 1/2 it is
    ``pi/2 - 2 * asin(isqrt((SCALE - s) // 2 * SCALE))``; up to 1/2 the series
    ``p_0 = s``, ``p_k = p_{k-1} * s2 // SCALE * (2k - 1) // (2k)``, summing ``p_k // (2k + 1)``
    until ``p_k`` is 0."""
    if 2 * s > SCALE:
        return PI_FIXED // 2 - 2 * asin_fixed(isqrt((SCALE - s) // 2 * SCALE))
    s2 = s * s // SCALE
    p = total = s
    k = 1
    while p:
        p = p * s2 // SCALE * (2 * k - 1) // (2 * k)
        total += p // (2 * k + 1)
        k += 1
    return total


def distance_m(a: tuple[int, int], b: tuple[int, int]) -> int:
    """The haversine distance between two (lat_e6, lon_e6) points, whole metres (floor)."""
    dlat = abs(a[0] - b[0])
    dlon = abs(a[1] - b[1])
    if dlon > MAX_LON_E6:
        dlon = 2 * MAX_LON_E6 - dlon
    # Half the angle, in radians: d / 2 * pi / 180e6.
    sin_dlat = sin_fixed(dlat * PI_FIXED // 360_000_000)
    sin_dlon = sin_fixed(dlon * PI_FIXED // 360_000_000)
    cos_a = sin_fixed((MAX_LAT_E6 - abs(a[0])) * PI_FIXED // 180_000_000)
    cos_b = sin_fixed((MAX_LAT_E6 - abs(b[0])) * PI_FIXED // 180_000_000)
    h = (
        sin_dlat * sin_dlat // SCALE
        + cos_a * cos_b // SCALE * (sin_dlon * sin_dlon // SCALE) // SCALE
    )
    h = min(h, SCALE)
    return 2 * EARTH_RADIUS_M * asin_fixed(isqrt(h * SCALE)) // SCALE


def parse_location(raw: object) -> tuple[int, int] | None:
    """A punch's ``location``: ``null`` or ``{"lat_e6", "lon_e6"}``, integers in range.
    Raises ValueError naming what is wrong."""
    if raw is None:
        return None
    if type(raw) is not dict or sorted(raw) != ["lat_e6", "lon_e6"]:
        raise ValueError('location is {"lat_e6": int, "lon_e6": int} (micro-degrees) or null')
    lat, lon = raw["lat_e6"], raw["lon_e6"]
    if type(lat) is not int or not -MAX_LAT_E6 <= lat <= MAX_LAT_E6:
        raise ValueError("location.lat_e6 is an integer from -90000000 to 90000000")
    if type(lon) is not int or not -MAX_LON_E6 <= lon <= MAX_LON_E6:
        raise ValueError("location.lon_e6 is an integer from -180000000 to 180000000")
    return lat, lon


def parse_networks(blocks: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks (``10.0.0.0/8``, ``2001:db8::/32``; a bare address is one host). Raises
    ValueError naming the first bad one (host bits set count as bad: ``10.0.0.1/8``)."""
    out: list[Network] = []
    for block in blocks:
        try:
            out.append(ipaddress.ip_network(block.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{block!r} is not a CIDR block ({exc})") from None
    return tuple(out)


def address_allowed(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether ``address`` (the connection's peer) is in one of ``networks``; an IPv4
    address mapped into IPv6 (``::ffff:10.0.0.1``) counts as the IPv4 one; an address that
    does not parse is in none."""
    if address is None:
        return False
    try:
        parsed: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in net for net in networks)


@dataclass(frozen=True, slots=True)
class FraudPolicy:
    """The venue's location (micro-degrees) and radius, the allow-list, and each check's
    policy. The default checks nothing."""

    venue: tuple[int, int] | None = None
    radius_m: int = 150
    geofence: Policy = "allow"
    networks: tuple[Network, ...] = ()
    network: Policy = "allow"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``checks``: the flags the punch keeps (sorted); ``distance_m`` from the venue, when
    both are known; ``refused``: the failed check a ``deny`` policy refuses, else None."""

    checks: tuple[str, ...] = ()
    distance_m: int | None = None
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": list(self.checks),
            "distance_m": self.distance_m,
            "refused": self.refused,
        }


def judge(
    policy: FraudPolicy,
    location: tuple[int, int] | None,
    address: str | None,
    *,
    offline: bool,
) -> Verdict:
    """The checks of one punch on the server (20.7): geofence first, then the network."""
    checks: list[str] = []
    refused: str | None = None
    distance = (
        None if policy.venue is None or location is None else distance_m(location, policy.venue)
    )
    failures: list[tuple[str, Policy]] = []
    if policy.geofence != "allow":
        if location is None:
            failures.append(("no-location", policy.geofence))
        elif distance is not None and distance > policy.radius_m:
            failures.append(("outside-geofence", policy.geofence))
    if policy.network != "allow":
        if offline:
            checks.append("network-unchecked")
        elif not address_allowed(address, policy.networks):
            failures.append(("outside-network", policy.network))
    for flag, rule in failures:
        if rule == "deny" and refused is None:
            refused = flag
        checks.append(flag)
    return Verdict(tuple(sorted(checks)), distance, refused)


def policy_from(settings: Mapping[str, Any]) -> FraudPolicy:
    """A policy from its JSON form (the vectors' ``policy``)."""
    venue = settings.get("venue")
    return FraudPolicy(
        venue=None if venue is None else (venue["lat_e6"], venue["lon_e6"]),
        radius_m=settings.get("radius_m", 150),
        geofence=settings.get("geofence", "allow"),
        networks=parse_networks(settings.get("ip_allow", ())),
        network=settings.get("network", "allow"),
    )
