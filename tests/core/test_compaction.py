"""Compacted catch-up on the terminal (``docs/protocol.md`` section 23): pages before the
last are staged and change nothing visible; the last applies them all at once; an
interrupted catch-up resumes from its staged cursor; a server that does not compact gets
feed pages; the page's high-water mark acknowledges ops whose entries were overwritten.
And the page cache and the byte-exact page verification under it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.errors import ChecksumMismatchError, TransportError
from fynlo_sync.ops import Batch
from fynlo_sync.pages import PageCache
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import PullPage, PushResult, decode_page, encode, record_bytes, wire_page
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import SqliteTerminalStore
from fynlo_sync.store.base import Key
from fynlo_sync.store.migrations import Component, migrate_sqlite
from fynlo_sync.store.sqlite import TERMINAL_MIGRATIONS, connect
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from tests.core.conftest import TerminalFactory


class Pages:
    """A loopback that can fail the n-th pull and can pretend to be a 1.0 server."""

    def __init__(self, inner: LoopbackTransport, *, old_server: bool = False) -> None:
        self.inner = inner
        self.old_server = old_server
        self.asked: list[tuple[int, bool]] = []
        self.fail_at: int | None = None

    def push(self, batch: Batch) -> PushResult:
        return self.inner.push(batch)

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        self.asked.append((since, compact))
        if self.fail_at is not None and len(self.asked) == self.fail_at:
            raise TransportError("connection reset")
        return self.inner.pull(since, limit, compact=compact and not self.old_server)


def _notes(t: object, count: int, rounds: int) -> None:
    for r in range(rounds):
        for i in range(count):
            kind = t.put if r == 0 else t.patch  # type: ignore[attr-defined]
            kind("notes", f"n{i}", {"title": f"v{r}", "likes": 1})


def test_a_catch_up_in_pages_is_staged_and_applied_at_once(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a = make_terminal("a")
    _notes(a, count=6, rounds=3)  # 18 changes of 6 records
    a.sync()
    b = make_terminal("b", page_size=2)
    link = Pages(LoopbackTransport(server, "t1", "b"))
    b.transport = link
    link.fail_at = 3  # two pages staged, then the network drops
    with pytest.raises(TransportError):
        b.pull()
    assert b.store.meta().cursor == 0 and b.records("notes") == []  # nothing visible yet
    staged = b.store.staging()
    assert staged is not None and staged[0] == 16  # n0..n3, at versions 13..16
    link.fail_at = None
    assert b.pull() == 6 - 4  # resumed from the staged cursor: the two records left
    assert [s for s, _ in link.asked] == [0, 14, 16, 16]
    assert b.store.staging() is None and b.store.meta().cursor == 18
    assert b.store.server_records() == server.store.records("t1")
    assert [r.fields["title"] for r in b.records("notes")] == ["v2"] * 6


def test_a_record_written_during_the_catch_up_comes_once_at_its_newest_state(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a, b = make_terminal("a"), make_terminal("b", page_size=2)
    _notes(a, count=4, rounds=1)
    a.sync()
    link = Pages(LoopbackTransport(server, "t1", "b"))
    b.transport = link
    link.fail_at = 2
    with pytest.raises(TransportError):
        b.pull()  # n0, n1 staged at cursor 2
    a.patch("notes", "n0", {"title": "late"})
    a.sync()
    link.fail_at = None
    b.pull()
    assert b.get("notes", "n0").fields["title"] == "late"  # type: ignore[union-attr]
    assert b.store.server_records() == server.store.records("t1")


def test_an_old_server_gets_feed_pages_and_the_staging_is_dropped(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a, b = make_terminal("a"), make_terminal("b", page_size=2)
    _notes(a, count=3, rounds=2)
    a.sync()
    link = Pages(LoopbackTransport(server, "t1", "b"))
    b.transport = link
    link.fail_at = 2
    with pytest.raises(TransportError):
        b.pull()
    assert b.store.staging() is not None
    link.fail_at, link.old_server = None, True  # the server was rolled back to 1.0
    assert b.pull() == 6  # every change, from b's own cursor 0
    assert link.asked[2][0] == 5 and link.asked[3][0] == 0  # resumed, refused, restarted
    assert b.store.staging() is None and b.store.meta().cursor == 6
    assert b.store.server_records() == server.store.records("t1")


def test_the_page_high_water_acknowledges_an_op_whose_entry_was_overwritten(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    """b's counter delta commits but the answer is lost; a then writes the same record, so
    the compacted page's entry for it is a's. Without the high-water mark b would re-apply
    its delta over a count that already holds it."""
    a, b = make_terminal("a"), make_terminal("b")
    a.put("notes", "n", {"likes": 1})
    a.sync()
    b.sync()
    b.patch("notes", "n", {"likes": 5})
    inner = LoopbackTransport(server, "t1", "b")

    class LoseAnswer(Pages):
        def push(self, batch: Batch) -> PushResult:
            self.inner.push(batch)
            raise TransportError("answer lost")

    b.transport = LoseAnswer(inner)
    with pytest.raises(TransportError):
        b.push()
    a.patch("notes", "n", {"likes": 2})
    a.sync()
    b.transport = inner
    b.pull()
    assert b.get("notes", "n").fields["likes"] == 8  # type: ignore[union-attr]
    assert b.pending() == []
    assert [o.status for o in server.store.op_log("t1", "b")] == ["applied"]


def test_the_cache_serves_more_pages_forever_and_last_pages_while_the_cursor_holds(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    server.cache = PageCache()
    a = make_terminal("a")
    _notes(a, count=4, rounds=1)
    a.sync()
    server.cache.hits = server.cache.misses = 0
    first = server.pull_wire("t1", 0, 2, compact=True, node_id="b")
    last = server.pull_wire("t1", 2, 2, compact=True, node_id="b")
    assert first.more and not last.more and server.cache.misses == 2
    assert server.pull_wire("t1", 0, 2, compact=True, node_id="a").changes == first.changes
    assert server.pull_wire("t1", 0, 2, compact=True, node_id="a").high_water == 4
    assert server.cache.hits == 2
    a.patch("notes", "n3", {"title": "moved"})
    a.sync()
    server.cache.misses -= 1  # a's own pull after its push
    server.pull_wire("t1", 0, 2, compact=True, node_id="b")  # still right: a hit
    fresh = server.pull_wire("t1", 2, 2, compact=True, node_id="b")  # the cursor moved: a miss
    assert (server.cache.hits, server.cache.misses) == (3, 3)
    assert [c.record.record_id for c in decode_page(encode(fresh)).changes] == ["n2", "n3"]
    b = make_terminal("b", page_size=2)
    b.pull()
    assert b.store.server_records() == server.store.records("t1")


def test_the_cache_is_bounded_by_bytes() -> None:
    cache = PageCache(max_bytes=100)
    page = wire_page(0, [(1, b'{"a":' + b"1" * 40 + b"}")], 10)
    for since in range(5):
        cache.put(("t", since, 10, True), msgspec.structs.replace(page, since=since))
    assert len(cache) == 2 and cache.size <= 100


def test_a_page_verifies_by_its_bytes_and_by_the_canonical_form_when_reencoded(
    server: ServerReplica, make_terminal: TerminalFactory
) -> None:
    a = make_terminal("a")
    _notes(a, count=2, rounds=1)
    a.sync()
    body = encode(server.pull_wire("t1", 0, 10, compact=True, node_id="a"))
    fast = decode_page(body)
    pretty = msgspec.json.format(body, indent=2)  # re-encoded on the way: not the same bytes
    assert pretty != body and decode_page(pretty) == fast
    assert fast == server.pull("t1", 0, 10, compact=True, node_id="a")
    with pytest.raises(ChecksumMismatchError):
        decode_page(body.replace(b'"likes":1', b'"likes":2', 1))


class _KillAfter(Pages):
    """Kills this process (SIGKILL: no cleanup, no rollback but SQLite's own) at the
    ``kill_at``-th pull."""

    kill_at = 3

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        if len(self.asked) + 1 == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().pull(since, limit, compact=compact)


class _KillInPromote(SqliteTerminalStore):
    """Kills this process inside the last page's transaction, after the promotion."""

    def promote_staged(self, keep_local: Iterable[Key]) -> None:
        super().promote_staged(keep_local)
        os.kill(os.getpid(), signal.SIGKILL)


def _in_child(run: Callable[[], object]) -> int:
    """Run ``run`` in a forked process; the signal that ended it (0: it exited)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            run()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


@pytest.mark.parametrize("where", ["between pages", "in the last transaction"])
def test_a_catch_up_killed_midway_resumes_from_what_it_staged(
    where: str,
    server: ServerReplica,
    make_terminal: TerminalFactory,
    registry: Registry,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    """A real crash of the terminal's process (SIGKILL) during a compacted catch-up: on
    restart nothing of it is visible, its pending write is intact, and the catch-up
    resumes from the staged cursor to the same state as the server."""
    a = make_terminal("a")
    _notes(a, count=6, rounds=3)  # 6 records at versions 13..18
    a.sync()
    path = tmp_path / "t1-b.db"

    def child() -> None:
        if where == "between pages":
            b = make_terminal("b", page_size=2)
            b.transport = _KillAfter(LoopbackTransport(server, "t1", "b"))
        else:
            store = _KillInPromote(path, "b")
            b = Terminal(
                store, registry, LoopbackTransport(server, "t1", "b"), wall=clock, page_size=2
            )
        b.put("notes", "mine", {"title": "offline"})
        b.pull()

    assert _in_child(child) == signal.SIGKILL
    b = make_terminal("b", page_size=2)
    staged = b.store.staging()
    assert staged is not None and staged[0] == 16
    assert b.store.meta().cursor == 0 and b.store.server_records() == []
    assert [r.record_id for r in b.records("notes")] == ["mine"]
    assert [op.record_id for op in b.pending()] == ["mine"]
    b.pull()
    assert b.store.staging() is None and b.store.meta().cursor == 18
    assert b.store.server_records() == server.store.records("t1")
    assert [r.fields["title"] for r in b.records("notes")] == ["offline"] + ["v2"] * 6
    b.sync()
    a.pull()
    assert b.records("notes") == a.records("notes")


def test_a_catch_up_staged_by_the_previous_layout_is_kept_by_the_upgrade(
    server: ServerReplica, make_terminal: TerminalFactory, tmp_path: Path
) -> None:
    """A terminal file of terminal migration 2 (staged records in their own table) that
    was mid-catch-up: after the upgrade the staged records are still hidden, the catch-up
    resumes from its staged cursor and ends where the server is."""
    a = make_terminal("a")
    _notes(a, count=6, rounds=3)
    a.sync()
    path = tmp_path / "t1-b.db"
    old = connect(path)
    migrate_sqlite(old.conn, Component("terminal", TERMINAL_MIGRATIONS[:2]))
    page = server.pull("t1", 0, 4, compact=True, node_id="b")
    assert page.more
    old.conn.execute(
        "INSERT INTO fynlo_meta(id, node_id, next_seq, cursor, acked_seq, hlc, stage_cursor,"
        " stage_hlc) VALUES (1, 'b', 1, 0, 0, '0', ?, '0')",
        (page.cursor,),
    )
    old.conn.executemany(
        "INSERT INTO fynlo_staged(collection, record_id, body) VALUES (?, ?, ?)",
        [(c.record.collection, c.record.record_id, record_bytes(c.record)) for c in page.changes],
    )
    old.conn.close()
    b = make_terminal("b", page_size=2)
    assert b.store.staging() == (page.cursor, 0)
    assert b.store.server_records() == [] and b.records("notes") == []
    assert b.pull() == 2  # the two records after the staged cursor
    assert b.store.server_records() == server.store.records("t1")
    assert b.records("notes") == a.records("notes")
