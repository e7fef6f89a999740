"""Compacted pulls over HTTP (``docs/protocol.md`` section 23) on both backends: the
``compact`` parameter, pages made of stored canonical bytes verified by their bytes, the
page cache and its metric, and a terminal catching up in staged pages."""

from __future__ import annotations

import re
from pathlib import Path

from fynlo_sync.testing import ManualClock
from tests.server.conftest import Live, batch_of, raw
from tests.server.test_http import problem


def test_compact_pull_sends_each_record_once(live: Live) -> None:
    tenant = live.tenant()
    writer, reader = live.device(tenant), live.device(tenant)
    writer.push(batch_of(writer.node_id, 1, 3, record="r1"))  # r1 three times
    writer.push(batch_of(writer.node_id, 4, 1, record="r2"))
    page = reader.pull(0, 10, compact=True)
    assert page.compacted and page.high_water == 0 and not page.more
    assert [(c.seq, c.record.record_id) for c in page.changes] == [(3, "r1"), (4, "r2")]
    mine = writer.pull(0, 1, compact=True)
    assert mine.high_water == 4 and mine.more and mine.cursor == 3
    feed = reader.pull(0, 10)
    assert len(feed.changes) == 4 and not feed.compacted and feed.high_water is None
    body = raw(live, "GET", "/v1/sync/pull", reader, params={"cursor": 0}).json()
    assert "compacted" not in body and "high_water" not in body  # a 1.0 page, as before
    r = raw(live, "GET", "/v1/sync/pull", reader, params={"cursor": 0, "compact": 2})
    problem(r, 422, "malformed")


def test_repeated_pages_come_from_the_cache_and_the_metric_counts_them(live: Live) -> None:
    tenant = live.tenant()
    writer = live.device(tenant)
    writer.push(batch_of(writer.node_id, 1, 4, record="r1"))
    readers = [live.device(tenant) for _ in range(3)]

    def hits() -> float:
        text = raw(live, "GET", "/metrics").text
        found = re.search(r'^fynlo_page_cache_requests_total\{result="hit"\} (\S+)$', text, re.M)
        return 0.0 if found is None else float(found.group(1))

    before = hits()
    pages = [r.pull(0, 1000, compact=True) for r in readers]
    assert all(p.changes == pages[0].changes for p in pages)
    assert hits() >= before + 2  # the first reader's page served the other two


def test_a_terminal_catches_up_in_staged_compacted_pages(live: Live, tmp_path: Path) -> None:
    tenant = live.tenant()
    clock = ManualClock(tick_ms=1)
    a = live.terminal(tenant, tmp_path, clock, seed=1)
    for i in range(6):
        a.put("notes", f"n{i}", {"title": "first"})
        a.patch("notes", f"n{i}", {"title": "second"})
    a.sync()
    b = live.terminal(tenant, tmp_path, clock, seed=2)  # page_size 5: two pages, staged
    assert b.pull() == 6
    assert b.store.staging() is None and b.store.meta().cursor == 12
    assert sorted(r.fields["title"] for r in b.records("notes")) == ["second"] * 6
    assert b.store.server_records() == a.store.server_records()
