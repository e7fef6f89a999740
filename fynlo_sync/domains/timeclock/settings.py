"""The time clock's tenant settings: the fraud checks (protocol 20.7), read from
``FYNLO_TIMECLOCK_*`` like every plugin's settings (``docs/deploy.md``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fynlo_sync.domains.timeclock.fraud import (
    MAX_LAT_E6,
    MAX_LON_E6,
    FraudPolicy,
    parse_networks,
)

__all__ = ["TimeclockSettings"]

Lat = Annotated[int, msgspec.Meta(ge=-MAX_LAT_E6, le=MAX_LAT_E6)]
Lon = Annotated[int, msgspec.Meta(ge=-MAX_LON_E6, le=MAX_LON_E6)]


class TimeclockSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FYNLO_TIMECLOCK_VENUE_LAT_E6`` / ``_VENUE_LON_E6``: the venue, micro-degrees;
    ``_RADIUS_M`` (150): the geofence; ``_GEOFENCE_POLICY`` (``allow``): ``allow``, ``flag``
    or ``deny`` a punch outside it (or without a location); ``_IP_ALLOW``: CIDR blocks,
    comma separated; ``_IP_POLICY`` (``allow``): for a punch from an address outside them.
    A ``flag`` or ``deny`` policy needs its venue or its allow-list."""

    venue_lat_e6: Lat | None = None
    venue_lon_e6: Lon | None = None
    radius_m: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 150
    geofence_policy: Literal["allow", "flag", "deny"] = "allow"
    ip_allow: list[str] = msgspec.field(default_factory=list)
    ip_policy: Literal["allow", "flag", "deny"] = "allow"

    def __post_init__(self) -> None:
        if (self.venue_lat_e6 is None) != (self.venue_lon_e6 is None):
            raise ValueError(
                "FYNLO_TIMECLOCK_VENUE_LAT_E6 and FYNLO_TIMECLOCK_VENUE_LON_E6 are set together"
            )
        if self.geofence_policy != "allow" and self.venue_lat_e6 is None:
            raise ValueError(
                "FYNLO_TIMECLOCK_GEOFENCE_POLICY needs the venue "
                "(FYNLO_TIMECLOCK_VENUE_LAT_E6, FYNLO_TIMECLOCK_VENUE_LON_E6)"
            )
        try:
            parse_networks(self.ip_allow)
        except ValueError as exc:
            raise ValueError(f"FYNLO_TIMECLOCK_IP_ALLOW: {exc}") from None
        if self.ip_policy != "allow" and not self.ip_allow:
            raise ValueError("FYNLO_TIMECLOCK_IP_POLICY needs FYNLO_TIMECLOCK_IP_ALLOW")

    def policy(self) -> FraudPolicy:
        venue = None
        if self.venue_lat_e6 is not None and self.venue_lon_e6 is not None:
            venue = (self.venue_lat_e6, self.venue_lon_e6)
        return FraudPolicy(
            venue=venue,
            radius_m=self.radius_m,
            geofence=self.geofence_policy,
            networks=parse_networks(self.ip_allow),
            network=self.ip_policy,
        )
