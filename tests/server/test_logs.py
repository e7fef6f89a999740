"""The logs of a full run of ``fynlo serve`` (a subprocess, JSON lines): one line per
request and one per push with its outcome counts, every line JSON, and none of the secrets
the run used (the secret key, enrollment codes, access and refresh tokens) anywhere."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.sync.client import connect

from fynlo_sync.errors import ChecksumMismatchError, UnauthenticatedError
from fynlo_sync.protocol import encode_batch
from fynlo_sync.transport.http import USER_AGENT, HttpTransport, PokeListener
from server import admin
from server.settings import Settings
from server.testing import free_port
from tests.server.test_scale_out import _wait_ready, orders_batch


def _serve(settings: Settings, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **settings.to_env(), "FYNLO_LOG_FORMAT": "json"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fynlo_sync.cli", "serve", "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc, log)
    return proc, url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _full_run(settings: Settings, url: str) -> list[str]:
    """Enroll, push, pull, poke, refresh, refuse, revoke; returns every secret it used."""
    used = [settings.secret_key]
    tenant = admin.create_tenant(settings, "Cafe Logs")
    codes = [admin.enroll_device(settings, tenant).enrollment_code for _ in range(2)]
    used += codes + [code.split(".", 1)[1] for code in codes]
    till = HttpTransport.enroll(url, codes[0])
    bar = HttpTransport.enroll(url, codes[1])
    for link in (till, bar):
        assert link.tokens is not None
        used += [link.tokens.access_token, link.tokens.refresh_token]
    with PokeListener(bar) as listener:
        assert listener.connected.wait(10)
        till.push(orders_batch(till.node_id, 1, 3))
        assert listener.next(10) is not None
    bad = msgspec.json.decode(encode_batch(orders_batch(till.node_id, 4, 1)))
    bad["checksum"] = "0" * 32
    with pytest.raises(ChecksumMismatchError):
        till._authed("POST", "/v1/sync/push", content=msgspec.json.encode(bad))
    assert len(bar.pull(0, 100).changes) == 3
    first = till.tokens
    fresh = till.refresh()
    used += [fresh.access_token, fresh.refresh_token]
    with pytest.raises(UnauthenticatedError):  # a used refresh token, offered again
        HttpTransport(url, first).refresh()
    assert bar.tokens is not None
    # a token in a WebSocket query string (a client that cannot set headers) is never logged
    with connect(f"{bar.ws_url()}?token={bar.tokens.access_token}", proxy=None) as ws:
        ws.recv(timeout=10)
    httpx.get(url + "/v1/sync/pull", headers={"Authorization": "Bearer " + "x" * 40})
    admin.revoke_device(settings, tenant, bar.node_id)
    for link in (till, bar):
        link.close()
    return used


def test_a_full_run_logs_requests_and_pushes_and_no_secret(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", secret_key=secrets.token_urlsafe(32)
    )
    log = tmp_path / "server.log"
    proc, url = _serve(settings, log)
    try:
        used = _full_run(settings, url)
    finally:
        _stop(proc)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    for secret in used:
        assert secret not in text, f"a secret was logged: {secret[:6]}..."
    requests = [e for e in lines if e["event"] == "request"]
    paths = {(e["method"], e["path"], e["status"]) for e in requests}
    assert ("POST", "/v1/auth/device", 200) in paths
    assert ("POST", "/v1/sync/push", 200) in paths
    assert ("POST", "/v1/sync/push", 422) in paths
    assert ("GET", "/v1/sync/pull", 401) in paths
    assert all(e["level"] == "info" and e["duration_ms"] >= 0 for e in requests)
    assert any(e["client"] == USER_AGENT and e["tenant"] for e in requests)
    pushes: list[dict[str, Any]] = [e for e in lines if e["event"] == "push"]
    ok = next(e for e in pushes if e.get("problem") is None)
    assert ok["ops"] == 3 and ok["outcomes"] == {"applied": 3} and ok["node"]
    assert any(e.get("problem") == "checksum-mismatch" for e in pushes)
    assert any(e["event"] == "socket" and e["path"] == "/v1/sync/ws" for e in lines)
