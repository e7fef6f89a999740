"""Rate limits and quotas against a real server (issue 14, part 4): a flood from one device
or one address is answered 429 with Retry-After while another tenant keeps syncing;
enrollment-code guesses are throttled per code id; poke sockets are capped per device; a
client that never finishes its request is dropped after the request timeout."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from server import admin
from server.testing import run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, _settings_for, auth, batch_of, raw
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
