"""The order state machine: every transition in one table, enforced on terminal and server.

``TRANSITIONS[(state, command)]`` is the state after the command; a pair that is absent
is an illegal transition. ``None`` is the state of an order that does not exist yet.
Adding a line to an order already sent to the kitchen reopens it (the new line has not
been sent). ``PRECEDENCE`` orders states for ``smart_merge`` when two terminals set the
status concurrently: the later state in the service wins.
"""

from __future__ import annotations

from typing import Final

from fynlo_sync.plugins import StateTable

__all__ = [
    "COMMANDS",
    "PRECEDENCE",
    "STATES",
    "TABLE",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "next_state",
]

STATES: Final = ("open", "sent", "ready", "served", "closed", "voided")
PRECEDENCE: Final = STATES
TERMINAL_STATES: Final = frozenset({"closed", "voided"})
COMMANDS: Final = (
    "open",
    "add_line",
    "remove_line",
    "send_to_kitchen",
    "mark_ready",
    "serve",
    "close",
    "void",
)

TRANSITIONS: Final[dict[tuple[str | None, str], str]] = {
    (None, "open"): "open",
    ("open", "add_line"): "open",
    ("sent", "add_line"): "open",
    ("ready", "add_line"): "open",
    ("served", "add_line"): "open",
    ("open", "remove_line"): "open",
    ("sent", "remove_line"): "sent",
    ("open", "send_to_kitchen"): "sent",
    ("sent", "mark_ready"): "ready",
    ("ready", "serve"): "served",
    ("open", "close"): "closed",
    ("served", "close"): "closed",
    ("open", "void"): "voided",
    ("sent", "void"): "voided",
    ("ready", "void"): "voided",
    ("served", "void"): "voided",
}


#: The table as data: what the orders collection enforces and the schema export publishes.
TABLE: Final = StateTable(
    field="status",
    states=PRECEDENCE,
    transitions=TRANSITIONS,
    commands=COMMANDS,
    final=TERMINAL_STATES,
)


def next_state(state: str | None, command: str) -> str | None:
    """The state after ``command`` in ``state``, or ``None`` if the transition is illegal."""
    return TABLE.next(state, command)
