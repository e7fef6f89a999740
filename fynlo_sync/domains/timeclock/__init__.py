"""The time clock: timecards with punches and breaks, overtime rules as data, approvals."""

from fynlo_sync.domains.timeclock.plugin import (
    PERMISSIONS,
    TIMECARDS,
    TIMECARDS_COLLECTION,
    TimeclockPlugin,
    derive_timecard,
    due_auto_closes,
    timecard_id,
    week_of,
)
from fynlo_sync.domains.timeclock.rules import RULE_SETS, Rounding, RuleSet, Tier, overtime
from fynlo_sync.domains.timeclock.states import TRANSITIONS, next_state

__all__ = [
    "PERMISSIONS",
    "RULE_SETS",
    "TIMECARDS",
    "TIMECARDS_COLLECTION",
    "TRANSITIONS",
    "Rounding",
    "RuleSet",
    "Tier",
    "TimeclockPlugin",
    "derive_timecard",
    "due_auto_closes",
    "next_state",
    "overtime",
    "timecard_id",
    "week_of",
]
