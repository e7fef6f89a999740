"""One-time WebSocket tickets (docs/protocol.md section 7): ``POST /v1/sync/ws-ticket``, then
``GET /v1/sync/ws?ticket=``. Against a real server per backend (SQLite; PostgreSQL with
Redis), one per module; the server's clock is the system clock plus an offset the expiry
test moves."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.testing import run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, _settings_for, auth, batch_of, raw

PROBLEM = "https://fynlo.dev/problems/unauthenticated"
_offset_ms = [0]


def _wall() -> int:
    return time.time_ns() // 1_000_000 + _offset_ms[0]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    kind: str = request.param
    settings = _settings_for(kind, request, tmp_path_factory.mktemp(f"tickets-{kind}"))
    with run_in_thread(settings, registry=make_registry(), wall=_wall) as url:
        server = Live(url, settings, kind)
        yield server
        for link in server.links:
            link.close()


def _ticket(live: Live, link: HttpTransport) -> str:
    got = raw(live, "POST", "/v1/sync/ws-ticket", link)
    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "no-store"
    body = got.json()
    assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == 30
    assert body["ticket"].startswith("wt_")
    ticket: str = body["ticket"]
    return ticket


def _refusal(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The problem that refused the upgrade (a 401 answer instead of the handshake)."""
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers or {}, proxy=None, open_timeout=10)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    problem: dict[str, Any] = json.loads(response.body or b"")
    assert problem["type"] == PROBLEM and problem["status"] == 401
    return problem


def test_a_ticket_opens_one_socket_once(live: Live) -> None:
    link = live.device(live.tenant())
    url = f"{link.ws_url()}?ticket={_ticket(live, link)}"
    with connect(url, proxy=None, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}
        link.push(batch_of(link.node_id, 1, 1))
        assert json.loads(ws.recv(timeout=10))["cursor"] >= 1
    assert _refusal(url)["reason"] == "ticket-used"  # reuse, after the socket closed


def test_unknown_and_empty_tickets_are_refused(live: Live) -> None:
    link = live.device(live.tenant())
    for ticket in ("wt_nonsense", "", "rt_" + "x" * 40, "wt_" + "y" * 200):
        assert _refusal(f"{link.ws_url()}?ticket={ticket}")["reason"] == "ticket-unknown"


def test_an_expired_ticket_is_refused(live: Live) -> None:
    link = live.device(live.tenant())
    ticket = _ticket(live, link)
    _offset_ms[0] += 31_000  # past the 30 s lifetime
    try:
        assert _refusal(f"{link.ws_url()}?ticket={ticket}")["reason"] == "ticket-expired"
    finally:
        _offset_ms[0] -= 31_000


def test_a_ticket_is_its_tenants_only(live: Live) -> None:
    mine, theirs = live.tenant(), live.tenant()
    link, other = live.device(mine), live.device(theirs)
    other.push(batch_of(other.node_id, 1, 3))  # the other tenant's feed is at 3
    # With another tenant's access token in the header: refused, and the ticket is spent.
    ticket = _ticket(live, link)
    url = f"{link.ws_url()}?ticket={ticket}"
    assert _refusal(url, auth(other))["reason"] == "ticket-device"
    assert _refusal(url)["reason"] == "ticket-used"
    # Alone, a ticket is its own tenant's socket: the first poke is that tenant's cursor.
    with connect(f"{link.ws_url()}?ticket={_ticket(live, link)}", proxy=None) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}
    with connect(
        f"{link.ws_url()}?ticket={_ticket(live, link)}", proxy=None, additional_headers=auth(link)
    ) as ws:  # the same device in the header: fine
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}


def test_simultaneous_uses_of_one_ticket_open_one_socket(live: Live) -> None:
    link = live.device(live.tenant())
    url = f"{link.ws_url()}?ticket={_ticket(live, link)}"
    opened: list[bool] = []
    reasons: list[str] = []
    gate = threading.Barrier(6)

    def attempt() -> None:
        gate.wait()
        try:
            with connect(url, proxy=None, open_timeout=10) as ws:
                ws.recv(timeout=10)
                opened.append(True)
        except InvalidStatus as exc:
            reasons.append(json.loads(exc.response.body or b"")["reason"])

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == [True] and reasons == ["ticket-used"] * 5


def test_a_revoked_devices_ticket_is_refused(live: Live) -> None:
    tenant = live.tenant()
    link = live.device(tenant)
    ticket = _ticket(live, link)
    admin.revoke_device(live.settings, tenant, link.node_id)
    problem = _refusal(f"{link.ws_url()}?ticket={ticket}")
    assert "reason" not in problem


def test_a_ticket_needs_an_access_token(live: Live) -> None:
    got = raw(live, "POST", "/v1/sync/ws-ticket")
    assert got.status_code == 401 and got.json()["type"] == PROBLEM


def test_the_terminal_listens_with_tickets(live: Live) -> None:
    tenant = live.tenant()
    link, writer = live.device(tenant), live.device(tenant)
    with PokeListener(link) as listener:
        assert listener.next(timeout=10) == 0
        writer.push(batch_of(writer.node_id, 1, 2))
        assert listener.next(timeout=10) == 2
    # It connected by ticket: one was issued to it and used up.
    assert _used_tickets(live, tenant, link.node_id) >= 1


def _used_tickets(live: Live, tenant: str, node: str) -> int:
    async def count() -> int:
        async with admin.open_accounts(live.settings) as accounts:
            row = await accounts.db.fetchrow(
                "SELECT COUNT(*) FROM fynlo_ws_tickets"
                " WHERE tenant_id = $1 AND node_id = $2 AND used_ms IS NOT NULL",
                tenant,
                node,
            )
        assert row is not None
        return int(row[0])

    return anyio.run(count)


def test_the_deprecated_query_token_still_works_and_is_counted(live: Live) -> None:
    """Old terminals' ``?token=`` keeps working (section 17), and /metrics counts it, so
    operators can tell when no terminal needs it any more."""
    import re

    import httpx

    def counted() -> float:
        text = httpx.get(live.url + "/metrics", timeout=10).text
        found = re.findall(r"^fynlo_ws_query_token_total (\S+)$", text, re.MULTILINE)
        return float(found[0]) if found else 0.0

    link = live.device(live.tenant())
    assert link.tokens is not None
    before = counted()
    with connect(f"{link.ws_url()}?token={link.tokens.access_token}", proxy=None) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}
    with connect(f"{link.ws_url()}?ticket={_ticket(live, link)}", proxy=None) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}
    assert counted() - before == 1
