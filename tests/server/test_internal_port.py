"""``FYNLO_INTERNAL_PORT``: ``/metrics`` and ``/schema`` on a second listener of the same
server process, and not on the public port (issue 14, part 6). A real server in a thread
(embedded SQLite) and one run by ``fynlo serve`` (a subprocess, the CLI's own listeners)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings, SettingsError
from server.testing import embedded_settings, free_port, run_in_thread
from tests.core.conftest import make_registry
from tests.server.test_logs import _serve, _stop

INTERNAL = ("/metrics", "/schema/openapi.json", "/schema")
PUBLIC = ("/v1/sync/pull", "/v1/conflicts", "/v1/schema/domains")


def _not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, (response.request.url, response.status_code)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://fynlo.dev/problems/not-found"
    assert response.headers["x-content-type-options"] == "nosniff"


def _check(settings: Settings, public: str, internal: str, token: str = "") -> None:
    tenant = admin.create_tenant(settings, "cafe", "t" + secrets.token_hex(4))
    link = HttpTransport.enroll(public, admin.enroll_device(settings, tenant).enrollment_code)
    assert link.tokens is not None
    device = {"Authorization": f"Bearer {link.tokens.access_token}"}
    inside = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=10) as client:
        # The public port: the API, the probes; the internal paths do not exist there, with
        # or without a device's token (or the internal token).
        for path in INTERNAL:
            _not_found(client.get(public + path))
            _not_found(client.get(public + path, headers=device))
            _not_found(client.get(public + path, headers=inside))
        for path in PUBLIC:
            assert client.get(public + path, headers=device).status_code == 200, path
        assert client.get(public + "/health/ready").status_code == 200
        # The internal port: the internal paths and the probes, nothing of the API (not
        # even a 401 that would say the path exists).
        for path in INTERNAL:
            if token:
                _not_found(client.get(internal + path))
            got = client.get(internal + path, headers=inside)
            assert got.status_code == 200, path
        assert "fynlo_" in client.get(internal + "/metrics", headers=inside).text
        for path in PUBLIC:
            _not_found(client.get(internal + path, headers=device))
            _not_found(client.get(internal + path))
        body = {"enrollment_code": "x.y"}
        _not_found(client.post(internal + "/v1/auth/device", json=body))
        assert client.get(internal + "/health/live").status_code == 200
    ws = "ws" + internal[len("http") :] + "/v1/sync/ws"
    with pytest.raises(InvalidStatus):
        connect(ws, additional_headers=device, proxy=None, open_timeout=10)
    link.close()


@pytest.fixture
def split(tmp_path: Path) -> Iterator[tuple[Settings, str, str]]:
    settings = embedded_settings(tmp_path, internal_port=free_port())
    with run_in_thread(settings, registry=make_registry()) as url:
        yield settings, url, f"http://127.0.0.1:{settings.internal_port}"


def test_internal_paths_only_on_the_internal_port(split: tuple[Settings, str, str]) -> None:
    _check(*split)


def test_fynlo_serve_with_an_internal_port_and_token(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    settings = embedded_settings(tmp_path, internal_port=free_port(), internal_token=token)
    proc, url = _serve(settings, tmp_path / "serve.log")
    try:
        _check(settings, url, f"http://127.0.0.1:{settings.internal_port}", token)
    finally:
        _stop(proc)


def test_without_an_internal_port_the_paths_are_public(tmp_path: Path) -> None:
    with run_in_thread(embedded_settings(tmp_path), registry=make_registry()) as url:
        assert httpx.get(url + "/metrics", timeout=10).status_code == 200
        assert httpx.get(url + "/schema/openapi.json", timeout=10).status_code == 200


def test_the_internal_port_setting_is_checked() -> None:
    env = {"FYNLO_ENV": "dev"}
    assert Settings.from_env({**env, "FYNLO_INTERNAL_PORT": "9100"}).internal_port == 9100
    assert Settings.from_env(env).internal_port == 0
    for bad in ("70000", "-1", "metrics"):
        with pytest.raises(SettingsError, match="FYNLO_INTERNAL_PORT"):
            Settings.from_env({**env, "FYNLO_INTERNAL_PORT": bad})
