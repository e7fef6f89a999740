"""Rate limits and quotas against a real server (issue 14, part 4): a flood from one device
or one address is answered 429 with Retry-After while another tenant keeps syncing;
enrollment-code guesses are throttled per code id; poke sockets are capped per device; a
client that never finishes its request is dropped after the request timeout."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fynlo_sync.protocol import encode_batch
from server import admin
from server.testing import run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, _settings_for, auth, batch_of, raw, tokens_of
from tests.server.test_http import problem

RATES: dict[str, Any] = {
    "rate_device_per_min": 30,
    "rate_tenant_per_min": 45,
    "rate_anon_per_min": 10,
    "max_code_failures": 3,
    "max_sockets_per_device": 2,
    "request_timeout_s": 1,
}


def _serve(request: pytest.FixtureRequest, folder: Path, **overrides: Any) -> Iterator[Live]:
    settings = _settings_for(request.param, request, folder, **{**RATES, **overrides})
    with run_in_thread(settings, registry=make_registry()) as url:
        server = Live(url, settings, request.param)
        yield server
        for link in server.links:
            link.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """Per device and per tenant limits (every test uses its own tenants); the address
    limit is off here, since enrolling goes through the unauthenticated route."""
    yield from _serve(request, tmp_path_factory.mktemp("limited"), rate_anon_per_min=0)


@pytest.fixture(params=["sqlite", "postgres"])
def anon_limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """A fresh server, so that this address's counter starts at zero."""
    yield from _serve(request, tmp_path)


def _device(live: Live, tenant: str) -> Any:
    """Enroll without the HTTP route (which is itself rate limited by address)."""
    return live.device(tenant)


def test_a_flooding_device_gets_429_and_another_tenant_does_not(limited: Live) -> None:
    noisy_tenant, quiet_tenant = limited.tenant(), limited.tenant()
    noisy = _device(limited, noisy_tenant)
    quiet = _device(limited, quiet_tenant)
    with httpx.Client(base_url=limited.url, headers=auth(noisy)) as client:
        answers = [client.get("/v1/sync/pull") for _ in range(40)]
    codes = [a.status_code for a in answers]
    assert codes[:28].count(200) == 28 and 429 in codes[30:]
    refused = next(a for a in answers if a.status_code == 429)
    body = problem(refused, 429, "rate-limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(refused.headers["retry-after"])
    # Nothing of the flood changed anything, and the other tenant is untouched.
    assert quiet.push(batch_of(quiet.node_id, 1, 3)).high_water == 3
    assert raw(limited, "GET", "/v1/sync/pull", quiet).status_code == 200


def test_a_tenant_limit_holds_across_its_devices(limited: Live) -> None:
    tenant = limited.tenant()
    devices = [_device(limited, tenant) for _ in range(3)]
    with httpx.Client(base_url=limited.url) as client:
        codes = [
            client.get("/v1/sync/pull", headers=auth(d)).status_code
            for _ in range(20)
            for d in devices
        ]
    assert codes.count(200) <= 45 and codes.count(429) >= 15


def test_unauthenticated_routes_are_limited_by_address(anon_limited: Live) -> None:
    limited = anon_limited
    with httpx.Client(base_url=limited.url) as client:
        codes = [
            client.post("/v1/auth/refresh", json={"refresh_token": "rt_nope"}).status_code
            for _ in range(14)
        ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429] * 4
    # The probes are never limited.
    assert raw(limited, "GET", "/health/live").status_code == 200


def test_enrollment_code_guesses_are_throttled_per_code(limited: Live) -> None:
    tenant = limited.tenant()
    code = admin.enroll_device(limited.settings, tenant).enrollment_code
    code_id = code.split(".")[0]
    for _ in range(3):
        r = raw(limited, "POST", "/v1/auth/device", json={"enrollment_code": f"{code_id}.guess"})
        problem(r, 401, "unauthenticated")
    # The right secret no longer opens it: the code is locked (make a new one).
    locked = raw(limited, "POST", "/v1/auth/device", json={"enrollment_code": code})
    assert problem(locked, 401, "unauthenticated")["reason"] == "code-locked"
    fresh = admin.enroll_device(limited.settings, tenant).enrollment_code
    assert (
        raw(limited, "POST", "/v1/auth/device", json={"enrollment_code": fresh}).status_code == 200
    )


def test_poke_sockets_are_capped_per_device(limited: Live) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    link = _device(limited, limited.tenant())
    opened = [connect(link.ws_url(), additional_headers=auth(link), proxy=None) for _ in range(2)]
    try:
        for ws in opened:
            assert ws.recv(timeout=10)
        with connect(link.ws_url(), additional_headers=auth(link), proxy=None) as third:
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    finally:
        for ws in opened:
            ws.close()
    # Closing one frees its place.
    with connect(link.ws_url(), additional_headers=auth(link), proxy=None) as again:
        assert again.recv(timeout=10)


def test_a_client_that_never_finishes_its_request_is_dropped(limited: Live) -> None:
    parts = urlsplit(limited.url)
    assert parts.hostname is not None and parts.port is not None
    slow = []
    for partial in (
        b"",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n",
        b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    ):
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(partial)
        slow.append(sock)
    for sock in slow:
        sock.settimeout(30)  # the server's request timeout is 1 s: it closes first
        assert sock.recv(1024) == b""  # closed by the server, no answer
        sock.close()
    assert httpx.get(limited.url + "/health/live").status_code == 200


def test_revocation_closes_the_socket_without_waiting_for_a_poke(limited: Live) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    tenant = limited.tenant()
    doomed = _device(limited, tenant)
    with connect(doomed.ws_url(), additional_headers=auth(doomed), proxy=None) as ws:
        assert ws.recv(timeout=10)
        admin.revoke_device(limited.settings, tenant, doomed.node_id)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)  # nothing was pushed: the sweep closes it (every 200 ms here)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def _early_refusals(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r"^fynlo_rate_refused_early_total (\S+)$", text, re.MULTILINE)
    return float(found[0]) if found else 0.0


def test_a_refused_device_is_refused_before_it_is_looked_up(limited: Live) -> None:
    """Past its limit, a device's requests are answered 429 from memory (counted in
    /metrics), with the same problem and Retry-After, and only its own: another device of
    another tenant is looked up and served as before."""
    noisy = _device(limited, limited.tenant())
    quiet = _device(limited, limited.tenant())
    before = _early_refusals(limited.url)
    with httpx.Client(base_url=limited.url, headers=auth(noisy)) as client:
        codes = [client.get("/v1/sync/pull").status_code for _ in range(40)]
        late = client.get("/v1/sync/pull")
    assert codes.count(429) >= 10
    retry_after = problem(late, 429, "rate-limited")["retry_after"]
    assert isinstance(retry_after, int) and retry_after >= 1
    assert int(late.headers["retry-after"]) == retry_after
    assert _early_refusals(limited.url) - before >= 10
    assert raw(limited, "GET", "/v1/sync/pull", quiet).status_code == 200


def test_refusals_end_before_the_limiters_window() -> None:
    from server.auth import Device
    from server.throttle import Refusals

    now = [100.0]
    refusals = Refusals(clock=lambda: now[0])
    device = Device("t", "till")
    assert refusals.retry_after("t", "till") is None
    refusals.refuse(device, 5)  # the window resets in at most 5 s: remembered for 4
    assert refusals.retry_after("t", "till") == 4
    assert refusals.retry_after("t", "other") is None and refusals.retry_after("u", "till") is None
    now[0] = 103.5
    assert refusals.retry_after("t", "till") == 1
    now[0] = 104.0
    assert refusals.retry_after("t", "till") is None
    refusals.refuse(device, 1)  # at most a second left: not worth remembering
    assert refusals.retry_after("t", "till") is None


def test_a_refused_token_is_answered_before_routing_and_a_forged_one_never_is(
    limited: Live,
) -> None:
    """Once a device is refused, a request with its token (signature checked when it was
    refused) is answered 429 before Litestar routes it or reads its body: a path that does
    not exist and a method the route does not allow get the same 429 problem, with
    Retry-After and the security headers, and the connection stays usable. A token with
    the same claims and a forged signature is never answered from memory (401), and a new
    token of the same device, from a refresh, is refused too."""
    noisy = _device(limited, limited.tenant())
    quiet = _device(limited, limited.tenant())
    headers = {**auth(noisy), "Content-Type": "application/json"}
    body = encode_batch(batch_of(noisy.node_id, 1, 2))
    with httpx.Client(base_url=limited.url, headers=headers) as client:
        codes = [client.post("/v1/sync/push", content=body).status_code for _ in range(35)]
        assert 429 in codes
        before = _early_refusals(limited.url)
        answers = [
            client.get("/v1/nowhere"),
            client.put("/v1/sync/push", content=body),
            client.post("/v1/sync/push", content=body),
            client.get("/v1/sync/pull"),
        ]
    for answer in answers:
        wait = problem(answer, 429, "rate-limited")["retry_after"]
        assert isinstance(wait, int) and int(answer.headers["retry-after"]) == wait >= 1
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert _early_refusals(limited.url) - before >= len(answers)
    token = tokens_of(noisy).access_token
    head, claims, signature = token.split(".")
    forged = f"{head}.{claims}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    r = raw(limited, "GET", "/v1/sync/pull", headers={"Authorization": f"Bearer {forged}"})
    problem(r, 401, "unauthenticated")
    refreshed = raw(
        limited,
        "POST",
        "/v1/auth/refresh",  # public: never refused from memory
        json={"refresh_token": tokens_of(noisy).refresh_token},
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    problem(raw(limited, "GET", "/v1/sync/pull", headers=fresh), 429, "rate-limited")
    assert raw(limited, "GET", "/v1/sync/pull", quiet).status_code == 200


def test_refused_tokens_are_remembered_until_they_expire_in_a_bounded_memory() -> None:
    from server.auth import Device
    from server.throttle import Refusals

    now, wall = [100.0], [5000.0]
    refusals = Refusals(clock=lambda: now[0], wall=lambda: wall[0])
    refusals.MAX_TOKENS = 2
    till, other = Device("t", "till"), Device("t", "other")
    refusals.vouch(b"tok-till", till, expires_s=5010.0)
    assert refusals.retry_after_token(b"tok-till") is None  # vouched for, not refused
    refusals.refuse(till, 5)
    assert refusals.retry_after_token(b"tok-till") == 4
    assert refusals.retry_after_token(b"tok-till-") is None  # only the exact token
    assert refusals.retry_after_token(b"never-vouched") is None
    refusals.vouch(b"tok-other", other, expires_s=5010.0)  # not refused: not answered
    assert refusals.retry_after_token(b"tok-other") is None
    assert refusals.retry_after_token(b"tok-till") == 4  # used last, so tok-other is older
    refusals.vouch(b"tok-till-2", till, expires_s=5010.0)  # the least recent one goes
    assert refusals.retry_after_token(b"tok-till-2") == 4
    assert refusals.retry_after_token(b"tok-till") == 4
    assert refusals.retry_after_token(b"tok-other") is None
    wall[0] = 5010.0  # expired: forgotten (the token check answers 401 from here)
    assert refusals.retry_after_token(b"tok-till") is None
    assert refusals.retry_after("t", "till") == 4  # the device itself is still refused


def test_push_slots_per_tenant() -> None:
    from fynlo_sync.errors import RateLimitedError
    from server.throttle import PushSlots

    slots = PushSlots(2)
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(RateLimitedError) as refused, slots.hold("a"):
            pass
        assert refused.value.extra == {"limit": "pushes-in-flight", "retry_after": 1}
        with slots.hold("b"):  # another tenant has its own
            pass
    with slots.hold("a"), slots.hold("a"):  # freed
        pass
    assert slots.busy == {}
    unlimited = PushSlots(0)
    with unlimited.hold("a"), unlimited.hold("a"), unlimited.hold("a"):
        pass


@pytest.fixture(scope="module", params=["sqlite"])
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One push in flight per tenant; slow bodies allowed (the cap is per process, the
    same on every backend)."""
    yield from _serve(
        request,
        tmp_path_factory.mktemp("capped"),
        rate_anon_per_min=0,
        rate_device_per_min=0,
        rate_tenant_per_min=0,
        max_pushes_in_flight_per_tenant=1,
        request_timeout_s=60,
    )


def test_a_tenant_past_its_pushes_in_flight_gets_429_at_once(capped: Live) -> None:
    """A push whose body has not all arrived holds its tenant's one slot: the tenant's
    next push is answered 429 ``rate-limited`` (``limit: pushes-in-flight``, Retry-After 1)
    while another tenant pushes as usual; once the slow one is gone, the tenant pushes
    again."""
    tenant = capped.tenant()
    slow_device, next_device = _device(capped, tenant), _device(capped, tenant)
    other = _device(capped, capped.tenant())
    body = encode_batch(batch_of(slow_device.node_id, 1, 1))
    parts = urlsplit(capped.url)
    assert parts.hostname is not None and parts.port is not None
    slow = socket.create_connection((parts.hostname, parts.port))
    token = tokens_of(slow_device).access_token
    slow.sendall(
        b"POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    mine = encode_batch(batch_of(next_device.node_id, 1, 1))
    try:
        for _ in range(200):  # until the slow push is in its handler (holding the slot)
            refused = raw(capped, "POST", "/v1/sync/push", next_device, content=mine)
            if refused.status_code == 429:
                break
            assert refused.status_code == 200, refused.text  # (the same batch: idempotent)
            time.sleep(0.02)
        body_of = problem(refused, 429, "rate-limited")
        assert body_of["limit"] == "pushes-in-flight" and body_of["retry_after"] == 1
        assert refused.headers["retry-after"] == "1"
        assert other.push(batch_of(other.node_id, 1, 2)).high_water == 2
    finally:
        slow.close()
    for _ in range(200):  # until the server has seen the slow client go
        again = raw(capped, "POST", "/v1/sync/push", next_device, content=mine)
        if again.status_code != 429:
            break
        time.sleep(0.02)
    assert again.status_code == 200, again.text
