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

from fynlo_sync.cli import main
from fynlo_sync.errors import ChecksumMismatchError, FynloError, UnauthenticatedError
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


PIN = "80613579"
STAFF = "fynlo_sync.domains.orders:OrdersPlugin,fynlo_sync.domains.staff:StaffPlugin"


def _staff(settings: Settings, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    base = ["--tenant", tenant, "--id", "e-ana"]
    assert main(["employee", "add", *base, "--name", "Ana", "--role", "manager"]) == 0
    assert main(["employee", "set-pin", *base, "--pin", PIN]) == 0


def _full_run(settings: Settings, url: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Enroll, push, pull, poke, refresh, refuse, revoke, sign staff in with a PIN (and a
    wrong one); returns every secret it used."""
    used = [settings.secret_key, PIN]
    tenant = admin.create_tenant(settings, "Cafe Logs")
    _staff(settings, tenant, monkeypatch)
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
    changes = bar.pull(0, 100).changes
    assert [c.record.collection for c in changes].count("orders") == 3
    signed = till.post("/v1/plugins/staff/sign-in", {"employee_id": "e-ana", "pin": PIN})
    used += [str(v) for k, v in signed.items() if "verifier" in k]
    with pytest.raises(FynloError):
        till.post("/v1/plugins/staff/sign-in", {"employee_id": "e-ana", "pin": "80613570"})
    used.append("80613570")
    first = till.tokens
    fresh = till.refresh()
    fresher = till.refresh()  # its successor used: no grace window for `first` (section 7)
    used += [fresh.access_token, fresh.refresh_token, fresher.access_token, fresher.refresh_token]
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


def test_a_full_run_logs_requests_and_pushes_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}",
        secret_key=secrets.token_urlsafe(32),
        plugins=tuple(STAFF.split(",")),
    )
    log = tmp_path / "server.log"
    proc, url = _serve(settings, log)
    try:
        used = _full_run(settings, url, monkeypatch)
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
    assert ("POST", "/v1/plugins/staff/sign-in", 200) in paths
    assert ("POST", "/v1/plugins/staff/sign-in", 403) in paths
