"""Compacted catch-up (``docs/protocol.md`` section 23) in the simulator: schedules pass
with it on, and two bugs planted in it are caught by the invariants that exist for feed
pages (the terminal's confirmed state is the feed folded up to its cursor; stock counts
are exact in every view)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.ops import Change
from fynlo_sync.protocol import PageRows
from fynlo_sync.sim import Schedule, Step, run_schedule
from fynlo_sync.sim.schedule import generate
from fynlo_sync.store.memory import MemoryServerStore
from fynlo_sync.store.sqlite import SqliteServerStore

_change = msgspec.json.Decoder(Change)

#: A delete, then the terminal catches up compacted one record a page.
TOMBSTONE = Schedule.from_json(
    {
        "seed": 4,
        "terminals": 1,
        "tenants": 1,
        "batch_size": 100,
        "page_size": 1,
        "server": "sqlite",
        "compact": True,
        "steps": [
            {"kind": "write", "what": "add_line", "a": 5, "b": 11},
            {"kind": "write", "what": "void", "a": 6, "b": 57},
            {"kind": "write", "what": "delete", "b": 10},
            {"kind": "write", "what": "open", "a": 5, "b": 89},
        ],
    }
)

#: T0's stock delta commits but its answer is lost; T1 then writes the same count, so the
#: compacted page's entry for it is T1's: only the page's high-water mark tells T0 that
#: its own delta is already in the count.
SUPERSEDED = Schedule(
    seed=3,
    terminals=2,
    tenants=1,
    batch_size=100,
    page_size=500,
    steps=(
        Step("write", t=0, what="stock", b=0),
        Step("sync", t=0, faults=("drop_response",)),
        Step("write", t=1, what="stock", b=0),
        Step("sync", t=1),
        Step("pull", t=0),
    ),
)


@pytest.mark.parametrize("seed", range(300, 340))
def test_generated_schedules_pass_with_compaction(seed: int) -> None:
    result = run_schedule(dataclasses.replace(generate(seed), compact=True))
    assert result.ok, result.failure


@pytest.mark.parametrize("schedule", [TOMBSTONE, SUPERSEDED], ids=["tombstone", "superseded"])
def test_the_pinned_schedules_pass(schedule: Schedule) -> None:
    assert run_schedule(schedule).ok


def test_a_tombstone_dropped_by_compaction_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    for store in (SqliteServerStore, MemoryServerStore):
        real = store.latest_bytes

        def latest_bytes(
            self: object, tenant: str, since: int, limit: int, _real: object = real
        ) -> list[tuple[int, bytes]]:
            found: list[tuple[int, bytes]] = _real(self, tenant, since, limit)  # type: ignore[operator]
            return [(s, b) for s, b in found if not _change.decode(b).record.deleted]

        monkeypatch.setattr(store, "latest_bytes", latest_bytes)
    result = run_schedule(TOMBSTONE)
    assert result.failure is not None and result.failure.invariant == "confirmed-state"


def test_an_op_acknowledged_only_by_its_own_entry_is_applied_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The planted bug: the terminal ignores the page's ``high_water`` (acknowledging from
    its own entries, as a feed page allows), so its delta, already in the count, is
    re-applied over it."""
    staged, direct = Terminal._apply_staged, Terminal._apply_page

    def apply_staged(self: Terminal, page: PageRows) -> list[object]:
        return list(staged(self, dataclasses.replace(page, high_water=0)))

    def apply_page(self: Terminal, page: PageRows, acked: int | None = None) -> list[object]:
        return list(direct(self, page, None))

    monkeypatch.setattr(Terminal, "_apply_staged", apply_staged)
    monkeypatch.setattr(Terminal, "_apply_page", apply_page)
    result = run_schedule(SUPERSEDED)
    assert result.failure is not None and result.failure.invariant == "stock-count"
