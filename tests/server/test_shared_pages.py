"""The page cache's tier shared through Redis (``server.shared_pages``): two servers on one
PostgreSQL and one Redis (two apps, each with its own in-process cache) serve each other's
pages; a page from Redis is byte-identical to the one read from the database and passes the
checksum; another tenant's page is never served; a last page the feed has moved past is
not served; ``high_water`` is the requester's own; and with Redis away pulls are answered
from the database."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from fynlo_sync.errors import MalformedError
from fynlo_sync.protocol import WirePage, decode_page, encode
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.backends import PostgresBackend
from server.settings import Settings
from server.shared_pages import Entry, SharedPages, decode_entry, encode_entry
from server.testing import NO_RATE_LIMITS, free_port, run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import batch_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def counted(result: str) -> float:
    value = REGISTRY.get_sample_value("fynlo_page_cache_shared_requests_total", {"result": result})
    return value or 0.0


class Pair:
    def __init__(self, settings: Settings, a: str, b: str) -> None:
        self.settings = settings
        self.a = a
        self.b = b
        self.links: list[HttpTransport] = []

    def tenant(self) -> str:
        return admin.create_tenant(self.settings, "test", "t" + secrets.token_hex(6))

    def device(self, url: str, tenant: str) -> HttpTransport:
        code = admin.enroll_device(self.settings, tenant).enrollment_code
        link = HttpTransport.enroll(url, code)
        self.links.append(link)
        return link


@pytest.fixture(scope="module")
def pair(postgres_session_url: str, redis_url: str) -> Iterator[Pair]:
    settings = Settings(
        database_url=postgres_session_url,
        redis_url=redis_url,
        redis_prefix="FYNLO_TEST_" + secrets.token_hex(4),
        secret_key=secrets.token_urlsafe(32),
    ).with_(**NO_RATE_LIMITS)
    with (
        run_in_thread(settings, registry=make_registry()) as a,
        run_in_thread(settings, registry=make_registry()) as b,
    ):
        both = Pair(settings, a, b)
        yield both
        for link in both.links:
            link.close()


def redis_keys(settings: Settings, redis_url: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(client.scan_iter(match=f"{settings.redis_prefix}:page:*"))
    finally:
        client.close()


def test_a_page_one_server_read_is_served_by_the_other_byte_for_byte(
    pair: Pair, redis_url: str
) -> None:
    tenant = pair.tenant()
    on_a, on_b = pair.device(pair.a, tenant), pair.device(pair.b, tenant)
    on_a.push(batch_of(on_a.node_id, 1, 12))
    hits, misses = counted("hit"), counted("miss")
    from_db = on_b._page(0, 5, False)  # b: not in its process, not in Redis: the database
    assert (counted("hit"), counted("miss")) == (hits, misses + 1)
    keys = redis_keys(pair.settings, redis_url)
    assert any(key.endswith(f":{len(tenant)}:{tenant}".encode()) for key in keys)
    from_redis = on_a._page(0, 5, False)  # a never read it: Redis
    assert (counted("hit"), counted("miss")) == (hits + 1, misses + 1)
    assert from_redis == from_db
    page = decode_page(from_redis)  # raises unless the checksum holds
    assert (page.cursor, page.more, len(page.changes)) == (5, True, 5)
    assert [c.op_id for c in page.changes] == [f"{on_a.node_id}-{s}-hello" for s in range(1, 6)]
    again = on_a._page(0, 5, False)  # now in a's own cache: Redis is not asked
    assert again == from_db
    assert counted("hit") + counted("miss") == hits + misses + 2
    text = httpx.get(pair.b + "/metrics", timeout=10).text
    found = re.search(r'^fynlo_page_cache_shared_requests_total\{result="hit"\} (\S+)$', text, re.M)
    assert found is not None
    assert float(found.group(1)) == counted("hit")


def test_another_tenants_page_at_the_same_cursor_is_never_served(pair: Pair) -> None:
    first, second = pair.tenant(), pair.tenant()
    a1, b2 = pair.device(pair.a, first), pair.device(pair.b, second)
    a1.push(batch_of(a1.node_id, 1, 6, title="first"))
    b2.push(batch_of(b2.node_id, 1, 6, title="second"))
    assert {(c.node_id, c.op_id[-6:]) for c in a1.pull(0, 5).changes} == {(a1.node_id, "-first")}
    misses = counted("miss")
    page = b2.pull(0, 5)  # same cursor, limit and kind; another tenant
    assert counted("miss") == misses + 1
    assert {(c.node_id, c.op_id[-7:]) for c in page.changes} == {(b2.node_id, "-second")}
    assert len(page.changes) == 5


def test_a_last_page_is_not_served_once_the_feed_moved_past_it(pair: Pair, redis_url: str) -> None:
    tenant = pair.tenant()
    on_a, on_b = pair.device(pair.a, tenant), pair.device(pair.b, tenant)
    on_a.push(batch_of(on_a.node_id, 1, 3))
    last = on_b.pull(0, 10)  # read from the database, kept in b and in Redis
    assert (last.cursor, last.more) == (3, False)
    on_a.push(batch_of(on_a.node_id, 4, 1))
    hits = counted("hit")
    moved = on_a.pull(0, 10)  # Redis holds the old last page: a must not serve it
    assert counted("hit") == hits
    assert (moved.cursor, moved.more, len(moved.changes)) == (4, False, 4)
    assert on_b.pull(0, 10) == moved  # nor may b, from its own cache
    on_a.push(batch_of(on_a.node_id, 5, 1))
    newer = on_b.pull(0, 10)  # b's own last page is out of date: b reads and shares it
    assert (newer.cursor, len(newer.changes)) == (5, 5)
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        (key,) = [k for k in redis_keys(pair.settings, redis_url) if k.endswith(tenant.encode())]
        value = client.get(key)
        assert isinstance(value, bytes)
        entry = decode_entry(value)
    finally:
        client.close()
    assert entry is not None
    assert (entry.cursor, entry.more) == (5, False)


def test_a_compacted_page_from_redis_carries_the_requesters_own_high_water(pair: Pair) -> None:
    tenant = pair.tenant()
    on_a, on_b = pair.device(pair.a, tenant), pair.device(pair.b, tenant)
    on_a.push(batch_of(on_a.node_id, 1, 4, record="r1"))
    on_b.push(batch_of(on_b.node_id, 1, 2, record="r2"))
    hits = counted("hit")
    body_b = on_b._page(0, 10, True)
    body_a = on_a._page(0, 10, True)  # from Redis, with a's own high-water mark
    assert counted("hit") == hits + 1
    page_b = msgspec.json.decode(body_b, type=WirePage)
    page_a = msgspec.json.decode(body_a, type=WirePage)
    assert (page_a.high_water, page_b.high_water) == (4, 2)
    assert bytes(page_a.changes) == bytes(page_b.changes)
    assert page_a.checksum == page_b.checksum
    decode_page(body_a)


def test_a_damaged_entry_is_a_miss() -> None:
    page = WirePage(since=0, cursor=3, more=True, changes=msgspec.Raw(b"[]"), checksum="0" * 32)
    assert decode_entry(encode_entry(page)) is None  # its bytes do not match its checksum
    assert decode_entry(b"no header") is None
    assert decode_entry(b"x 1 abc\n[]") is None
    assert decode_entry(b"1 2 abc\n[]") is None


def test_with_redis_away_pulls_are_answered_from_the_database(postgres_session_url: str) -> None:
    closed = free_port()  # nothing listens there
    settings = Settings(
        database_url=postgres_session_url,
        redis_url=f"redis://127.0.0.1:{closed}",
        secret_key=secrets.token_urlsafe(32),
    )
    tenant = admin.create_tenant(settings, "test", "t" + secrets.token_hex(6))
    clock = ManualClock()

    async def run() -> list[WirePage]:
        backend = await PostgresBackend.open(
            settings, make_registry(), lambda: 1_700_000_000_000, lambda tenant, cursor: None
        )
        try:
            assert backend.shared is not None
            backend.shared.clock = lambda: clock() / 1000
            await backend.push(tenant, encode(batch_of("n1", 1, 3)), node_id="n1")
            pages = []
            errors, off = counted("error"), counted("off")
            pages.append(await backend.pull(tenant, 0, 10, compact=False, node_id="n1"))
            assert (counted("error"), counted("off")) == (errors + 1, off)
            # Redis failed a moment ago: not asked again yet
            pages.append(await backend.pull(tenant, 0, 2, compact=True, node_id="n1"))
            assert (counted("error"), counted("off")) == (errors + 1, off + 1)
            clock.advance(int(backend.shared.pause_s * 1000) + 1)
            pages.append(await backend.pull(tenant, 0, 2, compact=False, node_id="n1"))
            assert (counted("error"), counted("off")) == (errors + 2, off + 1)
            with pytest.raises(MalformedError):  # bad input is still bad input
                await backend.pull(tenant, 0, 0, compact=False, node_id="n1")
            return pages
        finally:
            await backend.close()

    feed, compacted, first = asyncio.run(run())
    assert (feed.cursor, feed.more, feed.high_water) == (3, False, None)
    assert (compacted.cursor, compacted.more, compacted.high_water) == (3, False, 3)  # one record
    assert (first.cursor, first.more) == (2, True)
    for page in (feed, compacted, first):
        decode_page(encode(page))


def test_the_redis_prefix_keeps_deployments_pages_apart(redis_url: str) -> None:
    """Two deployments on one Redis, a tenant of the same id in each: one's page is not
    the other's (the control: the same prefix finds it)."""
    from redis.asyncio import Redis

    page = WirePage(since=0, cursor=1, more=True, changes=msgspec.Raw(b"[]"), checksum="")
    page = msgspec.structs.replace(page, checksum=hashlib.md5(b"[]").hexdigest())

    async def run() -> tuple[object, object]:
        client = Redis.from_url(redis_url)
        one = SharedPages(client, prefix="FYNLO_A_" + secrets.token_hex(3), ttl_s=60)
        two = SharedPages(client, prefix="FYNLO_B_" + secrets.token_hex(3), ttl_s=60)
        same = SharedPages(client, prefix=two.prefix, ttl_s=60)
        await two.put(two.key("cafe", 0, 10, False, None), page)
        try:
            return (
                await one.get(one.key("cafe", 0, 10, False, None)),
                await same.get(same.key("cafe", 0, 10, False, None)),
            )
        finally:
            await client.delete(two.key("cafe", 0, 10, False, None))
            await client.aclose()

    other, control = asyncio.run(run())
    assert other is None
    assert control == Entry(cursor=1, more=True, checksum=page.checksum, changes=b"[]")


def test_concurrent_misses_of_a_page_make_one_database_read(postgres_session_url: str) -> None:
    """Two pulls of one page at once in one process: the second waits for the first's read
    and takes it (with its own high-water mark) when it has more; a last page it checks
    against the feed itself (the feed may have moved since the first's read)."""
    settings = Settings(database_url=postgres_session_url, secret_key=secrets.token_urlsafe(32))
    tenant = admin.create_tenant(settings, "test", "t" + secrets.token_hex(6))

    async def run() -> None:
        backend = await PostgresBackend.open(
            settings, make_registry(), lambda: 1_700_000_000_000, lambda tenant, cursor: None
        )
        store = backend.replica.store
        reads: list[str] = []
        entered, gate = asyncio.Event(), asyncio.Event()

        def recorded(name: str, *, wait: bool) -> Callable[..., Awaitable[object]]:
            real = getattr(store, name)

            async def read(*args: object) -> object:
                found = await real(*args)
                reads.append(name)
                if wait:  # the rows are read; the answer waits for the gate
                    entered.set()
                    await gate.wait()
                return found

            return read

        async def both(
            limit: int, compact: bool, meanwhile: Callable[[], Awaitable[object]] | None = None
        ) -> tuple[WirePage, WirePage]:
            reads.clear()
            entered.clear()
            gate.clear()
            first = asyncio.create_task(
                backend.pull(tenant, 0, limit, compact=compact, node_id="n1")
            )
            await entered.wait()  # the first has read its rows
            second = asyncio.create_task(
                backend.pull(tenant, 0, limit, compact=compact, node_id="n2")
            )
            while compact and reads.count("high_water") < 3:  # the first reads it twice
                await asyncio.sleep(0.001)
            for _ in range(5):  # then nothing awaits I/O before it waits for the first
                await asyncio.sleep(0)
            if meanwhile is not None:
                await meanwhile()
            gate.set()
            return await first, await second

        try:
            await backend.push(tenant, encode(batch_of("n1", 1, 3, record="a")), node_id="n1")
            await backend.push(tenant, encode(batch_of("n1", 4, 3, record="b")), node_id="n1")
            await backend.push(tenant, encode(batch_of("n2", 1, 1, record="c")), node_id="n2")
            store.changes_bytes = recorded("changes_bytes", wait=True)
            store.latest_bytes = recorded("latest_bytes", wait=True)
            store.high_water = recorded("high_water", wait=False)
            joined = (
                REGISTRY.get_sample_value("fynlo_page_cache_requests_total", {"result": "joined"})
                or 0.0
            )
            one, two = await both(4, False)
            assert reads == ["changes_bytes"]
            assert one == two and one.more

            async def push() -> None:
                await backend.push(tenant, encode(batch_of("n2", 2, 1, record="d")), node_id="n2")

            one, two = await both(20, False, push)  # a last page, and the feed moves on
            assert reads == ["changes_bytes", "changes_bytes"]
            assert (one.cursor, one.more, two.cursor, two.more) == (7, False, 8, False)
            one, two = await both(2, True)
            assert reads.count("latest_bytes") == 1
            assert (one.high_water, two.high_water) == (6, 2)
            assert one.changes == two.changes and one.more
            assert (
                REGISTRY.get_sample_value("fynlo_page_cache_requests_total", {"result": "joined"})
                == joined + 2
            )
        finally:
            await backend.close()

    asyncio.run(run())
