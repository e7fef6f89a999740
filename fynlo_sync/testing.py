"""Test helpers for users of fynlo-sync: a manual wall clock and hypothesis strategies.

``ManualClock`` is a real clock whose time only moves when told to, for tests and
simulations that must replay exactly. The hypothesis strategies generate the float-free
JSON the protocol accepts, so a plugin author can property-test their own schemas.
"""

from __future__ import annotations

from typing import Any

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.errors import CallerError

__all__ = ["ManualClock", "json_values"]


class ManualClock:
    """Wall-clock milliseconds that move only by :meth:`advance` or :meth:`set`.

    Call the instance to read it (it is a ``Callable[[], int]``, the shape every fynlo
    clock takes). ``tick_ms`` moves time forward on every read, so code that polls the
    clock in a loop still sees time pass.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000, tick_ms: int = 0) -> None:
        if start_ms < 0 or tick_ms < 0:
            raise CallerError("a manual clock starts at >= 0 and ticks by >= 0")
        self._now = start_ms
        self.tick_ms = tick_ms

    def __call__(self) -> int:
        now = self._now
        self._now += self.tick_ms
        return now

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise CallerError("advance() moves forward; use set() to jump back")
        self._now += ms

    def set(self, ms: int) -> None:
        """Jump to ``ms`` (backwards too: a wall clock that an NTP sync corrects)."""
        if ms < 0:
            raise CallerError("a wall clock reading is >= 0")
        self._now = ms


def json_values(max_leaves: int = 20) -> Any:
    """A hypothesis strategy for float-free JSON values (needs the ``dev`` extra)."""
    from hypothesis import strategies as st

    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
        | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
    )
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6),
            children,
            max_size=4,
        ),
        max_leaves=max_leaves,
    )
