"""Headers, internal endpoints, logs and Redis isolation (issue 14, part 6)."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.serving import SECURITY_HEADERS
from server.settings import Settings
from server.testing import embedded_settings, run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, batch_of, raw


def test_security_headers_on_answers_and_problems(live: Live) -> None:
    link = live.device(live.tenant())
    for response in (
        raw(live, "GET", "/health/live"),
        raw(live, "GET", "/v1/sync/pull", link),
        raw(live, "GET", "/v1/sync/pull"),  # 401 problem
        raw(live, "GET", "/nothing"),  # 404 problem
    ):
        for name, value in SECURITY_HEADERS:
            assert response.headers[name.decode()] == value.decode()


def test_token_responses_are_not_stored(live: Live) -> None:
    code = admin.enroll_device(live.settings, live.tenant()).enrollment_code
    got = raw(live, "POST", "/v1/auth/device", json={"enrollment_code": code})
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    again = raw(
        live, "POST", "/v1/auth/refresh", json={"refresh_token": got.json()["refresh_token"]}
    )
    assert again.status_code == 200 and again.headers["cache-control"] == "no-store"


def test_schema_pages_load_no_third_party_scripts(live: Live) -> None:
    assert raw(live, "GET", "/schema/openapi.json").status_code == 200
    for page in ("/schema", "/schema/swagger", "/schema/redoc", "/schema/elements"):
        r = raw(live, "GET", page)
        assert "<script" not in r.text and "cdn." not in r.text, page


def test_internal_endpoints_behind_a_token(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    settings = embedded_settings(tmp_path, internal_token=token)
    with run_in_thread(settings, registry=make_registry()) as url, httpx.Client() as client:
        for path in ("/metrics", "/schema/openapi.json"):
            refused = client.get(url + path)
            assert refused.status_code == 404
            assert refused.headers["content-type"] == "application/problem+json"
            assert client.get(url + path, headers={"Authorization": "Bearer x"}).status_code == 404
            good = client.get(url + path, headers={"Authorization": f"Bearer {token}"})
            assert good.status_code == 200
        assert client.get(url + "/health/live").status_code == 200


def _server(tmp_path: Path, redis_url: str, prefix: str, name: str) -> Settings:
    return embedded_settings(tmp_path / name, redis_url=redis_url, redis_prefix=prefix)


def _until(pokes: PokeListener, cursor: int) -> list[int]:
    """The pokes up to the first one with ``cursor``."""
    seen: list[int] = []
    while not seen or seen[-1] != cursor:
        got = pokes.next(10)
        assert got is not None, f"no poke {cursor} (saw {seen})"
        seen.append(got)
    return seen


def test_the_redis_prefix_keeps_deployments_apart(tmp_path: Path, redis_url: str) -> None:
    """Two deployments on one Redis, each with a tenant of the same id: a push on one must
    not poke the other's terminals, unless they share a prefix (the control)."""
    shared = "T" + secrets.token_hex(4)
    one = _server(tmp_path, redis_url, "FYNLO_A_" + secrets.token_hex(3), "a")
    two = _server(tmp_path, redis_url, "FYNLO_B_" + secrets.token_hex(3), "b")
    same = _server(tmp_path, redis_url, two.redis_prefix, "c")
    with (
        run_in_thread(one, registry=make_registry()) as url_one,
        run_in_thread(two, registry=make_registry()) as url_two,
        run_in_thread(same, registry=make_registry()) as url_same,
    ):
        links = []
        for settings, url in ((one, url_one), (two, url_two), (same, url_same)):
            admin.create_tenant(settings, "cafe", shared)
            code = admin.enroll_device(settings, shared).enrollment_code
            links.append(HttpTransport.enroll(url, code))
        pusher_one, listener_two, pusher_same = links
        with PokeListener(listener_two) as pokes:
            assert pokes.next(10) == 0
            # Another prefix (its tenant's feed goes to 5) must not reach listener_two, whose
            # own feed goes 0 -> 2 -> 3 by pushes on a server of its prefix (the control).
            # The other server's poke was published first, so it would have come first.
            pusher_one.push(batch_of(pusher_one.node_id, 1, 5))
            pusher_same.push(batch_of(pusher_same.node_id, 1, 2))
            seen = _until(pokes, 2)
            pusher_same.push(batch_of(pusher_same.node_id, 3, 1))
            seen += _until(pokes, 3)
            assert 5 not in seen and seen[-1] == 3, seen
        for link in links:
            link.close()
