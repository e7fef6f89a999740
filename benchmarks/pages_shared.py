"""Ad hoc (not in the harness): a catch-up storm on two server apps sharing one PostgreSQL
and one Redis, with the page cache's Redis tier off (``FYNLO_PAGE_CACHE_REDIS_TTL=0``) and
on, in the same run. Counts, not times: pulls, the pages read from the database, and the
share served from a cache.

    .venv/bin/python -m benchmarks.pages_shared [STAGGER_S]

The apps run in one Python process (two uvicorn servers on threads, each its own app and
in-process cache), so the Prometheus counters are their sum. ``STAGGER_S`` starts the
terminals that many seconds apart (0: all at once, where concurrent misses of one page
each read the database: there is no single-flight). Needs FYNLO_TEST_POSTGRES_URL /
FYNLO_TEST_REDIS_URL or the defaults of ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import REGISTRY

from fynlo_sync.ops import Batch
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings
from server.testing import NO_RATE_LIMITS, run_in_thread
from tests.conftest import POSTGRES_DEFAULT, REDIS_DEFAULT, _admin, _with_database
from tests.core.conftest import make_registry
from tests.server.conftest import note_op

__all__ = ["run"]

LOCAL = "fynlo_page_cache_requests_total"
SHARED = "fynlo_page_cache_shared_requests_total"


def _count(name: str, result: str) -> float:
    return REGISTRY.get_sample_value(name, {"result": result}) or 0.0


def run(ttl: int, stagger: float, changes: int = 10_000, per_server: int = 10) -> dict[str, float]:
    admin_url = os.environ.get("FYNLO_TEST_POSTGRES_URL", POSTGRES_DEFAULT)
    name = "fynlo_pages_shared_" + secrets.token_hex(4)
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    settings = Settings(
        database_url=_with_database(admin_url, name),
        redis_url=os.environ.get("FYNLO_TEST_REDIS_URL", REDIS_DEFAULT),
        redis_prefix="FYNLO_BENCH_" + secrets.token_hex(3),
        secret_key=secrets.token_urlsafe(32),
        page_cache_redis_ttl_s=ttl,
    ).with_(**NO_RATE_LIMITS)
    limit = 500
    try:
        with (
            run_in_thread(settings, registry=make_registry()) as one,
            run_in_thread(settings, registry=make_registry()) as two,
        ):
            tenant = admin.create_tenant(settings, "bench", "t" + secrets.token_hex(4))

            def device(url: str) -> HttpTransport:
                code = admin.enroll_device(settings, tenant).enrollment_code
                return HttpTransport.enroll(url, code)

            pusher = device(one)
            node = pusher.node_id
            for first in range(1, changes + 1, 1000):
                ops = [note_op(node, s, record=f"r{s}") for s in range(first, first + 1000)]
                pusher.push(Batch.of(node, ops))
            links = [device(one) for _ in range(per_server)]
            links += [device(two) for _ in range(per_server)]
            before = {r: _count(LOCAL, r) for r in ("hit", "miss")}
            shared_before = {r: _count(SHARED, r) for r in ("hit", "miss")}

            def catch_up(n: int) -> int:
                time.sleep(stagger * n)
                cursor, pages = 0, 0
                while True:
                    page = links[n].pull(cursor, limit)
                    cursor, pages = page.cursor, pages + 1
                    if not page.more:
                        return pages

            with ThreadPoolExecutor(len(links)) as pool:
                pulls = sum(pool.map(catch_up, range(len(links))))
            for link in [pusher, *links]:
                link.close()
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    # Every page read from the database is an in-process miss (a Redis miss goes on to the
    # process's cache, then the database).
    database = _count(LOCAL, "miss") - before["miss"]
    return {
        "pulls": pulls,
        "distinct_pages": changes / limit,
        "database_reads": database,
        "in_process_hits": _count(LOCAL, "hit") - before["hit"],
        "redis_hits": _count(SHARED, "hit") - shared_before["hit"],
        "redis_misses": _count(SHARED, "miss") - shared_before["miss"],
        "from_a_cache": (pulls - database) / pulls,
    }


def main() -> None:
    stagger = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    alone = run(0, stagger)
    shared = run(300, stagger)
    for label, figures in (("per process", alone), ("with Redis", shared)):
        print(label, " ".join(f"{k}={v:.3g}" for k, v in figures.items()))
    ratio = shared["database_reads"] / alone["database_reads"]
    print(f"database reads with Redis / per process: {ratio:.2f}x (stagger {stagger} s)")


if __name__ == "__main__":
    main()
