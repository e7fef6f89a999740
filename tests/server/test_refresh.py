"""Refresh-token rotation (issue 14, part 3): atomic on every backend, a grace window for
the retry of a rotation whose answer was lost that never forks the chain, and a maximum
chain lifetime.

The race runs against the real server over HTTP: two refreshes of one token, released
together, 100 times; after each, the device has exactly one live refresh token."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from fynlo_sync.errors import UnauthenticatedError
from fynlo_sync.testing import ManualClock
from server.accounts import Accounts
from server.sqlport import SqliteSql
from tests.server.conftest import Live, raw, tokens_of
from tests.server.test_http import problem

TRIALS = int(os.environ.get("FYNLO_REFRESH_TRIALS", "30"))  # the Show: 100


class Heads:
    """The device's unused refresh tokens (its live chain heads), read straight from the
    database over one connection."""

    SQL = (
        "SELECT token_hash FROM fynlo_refresh_tokens WHERE tenant_id = {0} AND node_id = {1}"
        " AND used_ms IS NULL"
    )

    def __init__(self, live: Live) -> None:
        self.live = live
        if live.kind == "sqlite":
            self.sqlite = sqlite3.connect(live.settings.sqlite_path)
        else:
            import asyncpg

            self.loop = asyncio.new_event_loop()
            self.pg = self.loop.run_until_complete(asyncpg.connect(live.settings.database_url))

    def __call__(self, tenant: str, node: str) -> list[str]:
        if self.live.kind == "sqlite":
            rows = self.sqlite.execute(self.SQL.format("?", "?"), (tenant, node)).fetchall()
        else:
            rows = self.loop.run_until_complete(
                self.pg.fetch(self.SQL.format("$1", "$2"), tenant, node)
            )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        if self.live.kind == "sqlite":
            self.sqlite.close()
        else:
            self.loop.run_until_complete(self.pg.close())
            self.loop.close()


def race(clients: list[httpx.Client], token: str) -> list[httpx.Response]:
    """One refresh of ``token`` per client, released together."""
    barrier = threading.Barrier(len(clients))
    out: list[httpx.Response] = []

    def go(client: httpx.Client) -> None:
        barrier.wait()
        out.append(client.post("/v1/auth/refresh", json={"refresh_token": token}))

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def test_concurrent_refreshes_leave_one_chain(live: Live) -> None:
    tenant = live.tenant()
    link = live.device(tenant)
    node, token = link.node_id, tokens_of(link).refresh_token
    heads = Heads(live)
    clients = [httpx.Client(base_url=live.url, timeout=20) for _ in range(2)]
    one_chain = 0
    try:
        for _ in range(TRIALS):
            answers = race(clients, token)
            assert all(a.status_code in (200, 401) for a in answers), [a.text for a in answers]
            issued = {
                hashlib.sha256(t.encode()).hexdigest(): t
                for t in (a.json()["refresh_token"] for a in answers if a.status_code == 200)
            }
            assert issued, "within the grace window the second refresh is a retry"
            live_heads = heads(tenant, node)
            assert len(live_heads) == 1, f"the chain forked: {len(live_heads)} live tokens"
            one_chain += 1
            token = issued[live_heads[0]]  # the last one written is the chain's head
    finally:
        heads.close()
        for client in clients:
            client.close()
    assert one_chain == TRIALS
    print(f"\nrefresh race ({live.kind}): {one_chain} of {TRIALS} trials one chain")


def test_a_superseded_token_is_reuse(live: Live) -> None:
    """The retry got a new successor; the successor it replaced is dead, and presenting
    it is reuse: the chain is revoked (a copy of the token was taken)."""
    link = live.device(live.tenant())
    first = tokens_of(link).refresh_token
    lost = raw(live, "POST", "/v1/auth/refresh", json={"refresh_token": first})
    retry = raw(live, "POST", "/v1/auth/refresh", json={"refresh_token": first})
    assert lost.status_code == retry.status_code == 200
    assert lost.json()["refresh_token"] != retry.json()["refresh_token"]
    assert raw(live, "GET", "/v1/sync/pull", headers=_bearer(retry)).status_code == 200
    dead = raw(
        live, "POST", "/v1/auth/refresh", json={"refresh_token": lost.json()["refresh_token"]}
    )
    assert problem(dead, 401, "unauthenticated")["reason"] == "refresh-token-reused"
    # ... and the whole chain went with it.
    gone = raw(
        live, "POST", "/v1/auth/refresh", json={"refresh_token": retry.json()["refresh_token"]}
    )
    problem(gone, 401, "unauthenticated")
    problem(raw(live, "GET", "/v1/sync/pull", headers=_bearer(retry)), 401, "unauthenticated")
    assert "no-store" in lost.headers.get("cache-control", "")


def _bearer(answer: httpx.Response) -> dict[str, str]:
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


# -------------------------------------------------------- the rules, on a manual clock


@pytest.fixture
def accounts(tmp_path: Path) -> tuple[Accounts, ManualClock]:
    clock = ManualClock(start_ms=1_700_000_000_000, tick_ms=0)
    db = SqliteSql(tmp_path / "accounts.db")
    got = Accounts(
        db, now_ms=clock, refresh_ttl_s=3600, refresh_grace_s=30, refresh_max_lifetime_s=7200
    )
    anyio.run(got.migrate)
    anyio.run(got.create_tenant, "t", "t1")
    return got, clock


def _enroll(accounts: Accounts) -> str:
    async def go() -> str:
        code = (await accounts.enroll("t1", "till")).enrollment_code
        return (await accounts.redeem(code)).refresh_token

    return anyio.run(go)


def test_grace_window_ends(accounts: tuple[Accounts, ManualClock]) -> None:
    acc, clock = accounts
    first = _enroll(acc)
    anyio.run(acc.refresh, first)
    clock.advance(30_000)
    again = anyio.run(acc.refresh, first)  # still a retry, at the window's last ms
    clock.advance(1)
    with pytest.raises(UnauthenticatedError) as caught:
        anyio.run(acc.refresh, first)
    assert caught.value.extra["reason"] == "refresh-token-reused"
    with pytest.raises(UnauthenticatedError):
        anyio.run(acc.refresh, again.refresh_token)


def test_no_grace_once_the_successor_was_used(accounts: tuple[Accounts, ManualClock]) -> None:
    acc, _ = accounts
    first = _enroll(acc)
    second = anyio.run(acc.refresh, first).refresh_token
    anyio.run(acc.refresh, second)  # the device moved on: first's answer was not lost
    with pytest.raises(UnauthenticatedError) as caught:
        anyio.run(acc.refresh, first)
    assert caught.value.extra["reason"] == "refresh-token-reused"


def test_a_chain_has_a_maximum_lifetime(accounts: tuple[Accounts, ManualClock]) -> None:
    acc, clock = accounts
    token = _enroll(acc)
    for _ in range(3):  # each rotation renews the token's own lifetime, not the chain's
        clock.advance(2000_000)
        token = anyio.run(acc.refresh, token).refresh_token
    clock.advance(2000_000)  # 8,000 s after enrollment: past the 7,200 s maximum
    with pytest.raises(UnauthenticatedError) as caught:
        anyio.run(acc.refresh, token)
    assert caught.value.extra["reason"] == "chain-expired"
    # Enrolling again starts a new chain.
    assert anyio.run(acc.refresh, _enroll(acc)).refresh_token.startswith("rt_")
