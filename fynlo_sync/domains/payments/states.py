"""The payment attempt state machine: every transition in one table, in one file.

``TRANSITIONS[(state, command)]`` is the attempt's state after the command; a pair that is
absent is illegal (``illegal-transition``). ``None`` is an attempt that does not exist yet.
``refund`` goes to ``refunded_partial``, or to ``refunded`` when it refunds everything
that is left (the command decides which from the amount; the table names the first).
``reverse`` is a late failure of a captured attempt (``payment_reverse``: the provider
took the money back after reporting it captured); the attempt ends ``failed`` with
``reversed`` set, and the ledger posts a reversal of its capture.

An attempt is **live** while money may still move without a new attempt: ``created``,
``pending`` (with the provider), ``requires_action`` (3-D Secure, a bank's consent) and
``authorised`` (held, not captured). An order has at most one live attempt.
"""

from __future__ import annotations

from typing import Final

from fynlo_sync.plugins import StateTable

__all__ = [
    "COMMANDS",
    "FINAL_STATES",
    "LIVE_STATES",
    "SETTLED_STATES",
    "STATES",
    "TABLE",
    "TRANSITIONS",
    "next_state",
]

STATES: Final = (
    "created",
    "pending",
    "requires_action",
    "authorised",
    "captured",
    "failed",
    "cancelled",
    "expired",
    "refunded_partial",
    "refunded",
)
#: The commands, by their short name; the order collection's command is ``payment_<name>``.
COMMANDS: Final = (
    "start",
    "cash",
    "submit",
    "require_action",
    "authorise",
    "capture",
    "fail",
    "cancel",
    "expire",
    "refund",
    "reverse",
)
LIVE_STATES: Final = frozenset({"created", "pending", "requires_action", "authorised"})
#: Money was captured (and may have been partly or wholly refunded since).
SETTLED_STATES: Final = frozenset({"captured", "refunded_partial", "refunded"})
#: Nothing more can happen.
FINAL_STATES: Final = frozenset({"failed", "cancelled", "expired", "refunded"})

_LIVE = ("created", "pending", "requires_action", "authorised")

TRANSITIONS: Final[dict[tuple[str | None, str], str]] = {
    (None, "start"): "created",
    (None, "cash"): "captured",
    ("created", "submit"): "pending",
    ("requires_action", "submit"): "pending",
    ("pending", "require_action"): "requires_action",
    ("pending", "authorise"): "authorised",
    ("requires_action", "authorise"): "authorised",
    ("pending", "capture"): "captured",
    ("authorised", "capture"): "captured",
    **{(state, "fail"): "failed" for state in _LIVE},
    **{(state, "cancel"): "cancelled" for state in _LIVE},
    **{(state, "expire"): "expired" for state in _LIVE},
    ("captured", "refund"): "refunded_partial",
    ("refunded_partial", "refund"): "refunded_partial",
    # A late failure: the provider reverses a payment it had reported captured (a bank
    # payment returned after execution). The capture's posting set stays; a reversal set
    # undoes it (section 19.8).
    ("captured", "reverse"): "failed",
}


#: The same table as data (an attempt's ``state``), for the schema export and ports.
TABLE: Final = StateTable(
    field="state", states=STATES, transitions=TRANSITIONS, commands=COMMANDS, final=FINAL_STATES
)


def next_state(state: str | None, command: str) -> str | None:
    """The state after ``command`` in ``state``, or ``None`` if the transition is illegal."""
    return TABLE.next(state, command)
