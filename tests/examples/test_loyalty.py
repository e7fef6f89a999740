"""The example plugin (examples/loyalty): its commands and invariant, and its routes, settings
error and invariant through a real ``fynlo serve`` subprocess that loads it from
FYNLO_PLUGINS."""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import conflict
from examples.loyalty.plugin import (
    CARDS,
    LoyaltyPlugin,
    LoyaltySettings,
    link_signature,
    verify_link,
    verify_webhook,
    webhook_signature,
)
from fynlo_sync.client import Terminal
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import IllegalTransitionError, PeerError, RejectedOpError, SettingsError
from fynlo_sync.plugins import InvariantViolation, Registry
from fynlo_sync.replica import ServerReplica
from fynlo_sync.store import MemoryServerStore, SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport import LoopbackTransport
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings
from server.testing import free_port
from tests.core.test_plugin_seam import _record
from tests.server.test_check import fynlo, plant, run_cli

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 40
HOOK = "h" * 40
PLUGINS = "fynlo_sync.domains.orders:OrdersPlugin,examples.loyalty.plugin:LoyaltyPlugin"
PROBLEM = "https://fynlo.dev/problems/"


def _registry() -> Registry:
    return conflict.registry([OrdersPlugin(), LoyaltyPlugin(LoyaltySettings(SECRET, HOOK))])


def _till(folder: Path, link: object, registry: Registry, node: str = "till") -> Terminal:
    return Terminal(
        SqliteTerminalStore(folder / f"{node}.db", node),
        registry,
        link,  # type: ignore[arg-type]
        wall=ManualClock(1_700_000_000_000),
        rng=random.Random(1),
    )


def test_stamps_turn_into_rewards_and_two_tills_offline_both_count(tmp_path: Path) -> None:
    registry = _registry()
    server = ServerReplica(MemoryServerStore(), registry)
    a = _till(tmp_path, LoopbackTransport(server, "t1", "a"), registry, "a")
    b = _till(tmp_path, LoopbackTransport(server, "t1", "b"), registry, "b")
    a.command(CARDS, "c1", "issue", {"customer": "Ada", "goal": 5})
    a.sync()
    b.sync()
    a.command(CARDS, "c1", "stamp", {"count": 3})
    b.command(CARDS, "c1", "stamp", {"count": 4})
    a.sync()
    b.sync()
    a.sync()
    card = server.store.load("t1", [(CARDS, "c1")])[(CARDS, "c1")]
    assert (card.fields["stamps"], card.fields["rewards"], card.fields["earned"]) == (2, 1, 1)
    assert a.get(CARDS, "c1") == b.get(CARDS, "c1") == card
    with pytest.raises(RejectedOpError, match="integer from 1 to 5"):
        a.command(CARDS, "c1", "stamp", {"count": 6})
    a.command(CARDS, "c1", "redeem", {})
    with pytest.raises(RejectedOpError, match="no reward"):
        a.command(CARDS, "c1", "redeem", {})
    a.command(CARDS, "c1", "close", {})
    with pytest.raises(IllegalTransitionError, match="a card cannot stamp when closed"):
        a.command(CARDS, "c1", "stamp", {"count": 1})
    assert registry.check_invariants(server.store.records("t1")) == []


def test_the_card_invariant_reports_a_card_that_kept_a_full_set_of_stamps() -> None:
    registry = _registry()
    full = _record(CARDS, "c9", status="active", goal=5, stamps=5, rewards=0, earned=0)
    fine = _record(CARDS, "c8", status="active", goal=5, stamps=4, rewards=1, earned=1)
    assert registry.check_invariants([fine, full]) == [
        InvariantViolation(
            "loyalty", "card-balance", "card c9 holds 5 stamps of 5: a reward not earned"
        )
    ]


def test_a_webhook_signature_covers_the_raw_body_and_a_recent_time() -> None:
    body = b'{"tenant": "t1", "card_id": "c1", "order_id": "o1"}'
    header = f"t=1000,v1={webhook_signature(HOOK, 1000, body)}"
    verify_webhook(HOOK, header, body, now_s=1000 + 300)
    for wrong_body, wrong_header, now in [
        (body + b" ", header, 1000),
        (body, header.replace("t=1000", "t=1001"), 1000),
        (body, header, 1000 + 301),
        (body, header, 1000 - 301),
        (body, "v1=" + webhook_signature(HOOK, 1000, body), 1000),
        (body, "t=1e3,v1=x", 1000),
        (body, "", 1000),
    ]:
        with pytest.raises(PeerError):
            verify_webhook(HOOK, wrong_header, wrong_body, now_s=now)


def test_a_link_is_verified_in_constant_time_and_expires() -> None:
    sig = link_signature(SECRET, "t1", "c1", 100)
    verify_link(SECRET, "t1", "c1", 100, sig, today=100)
    with pytest.raises(PeerError, match="signature is wrong"):
        verify_link(SECRET, "t1", "c2", 100, sig, today=100)
    with pytest.raises(PeerError, match="expired"):
        verify_link(SECRET, "t1", "c1", 100, sig, today=101)


def _serve(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = folder / f"serve-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fynlo_sync.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}", log


def _env(folder: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FYNLO_DATABASE_URL": f"sqlite:///{folder / 'server.db'}",
        "FYNLO_SECRET_KEY": secrets.token_urlsafe(32),
        "FYNLO_PLUGINS": PLUGINS,
        **extra,
    }


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"fynlo serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"fynlo serve not ready in 60 s:\n{log.read_text()}")
        time.sleep(0.1)


def _enrolled(url: str, settings: Settings, folder: Path) -> tuple[str, HttpTransport, Terminal]:
    """A new tenant on the served database, a device of it, and a till on that device."""
    tenant = admin.create_tenant(settings, "cafe", "cafe-" + secrets.token_hex(4))
    link = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
    return tenant, link, _till(folder, link, _registry(), link.node_id)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """``fynlo serve`` (uvicorn, its own process) with the loyalty plugin loaded from
    FYNLO_PLUGINS and its settings from FYNLO_LOYALTY_*."""
    folder = tmp_path_factory.mktemp("loyalty")
    env = _env(
        folder,
        FYNLO_LOYALTY_LINK_SECRET=SECRET,
        FYNLO_LOYALTY_WEBHOOK_SECRET=HOOK,
        FYNLO_LOYALTY_LINK_TTL_DAYS="30",
    )
    proc, url, log = _serve(folder, env)
    try:
        _wait_ready(proc, url, log)
        yield url, Settings.from_env(env)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_plugins_routes_through_fynlo_serve(
    served: tuple[str, Settings], tmp_path: Path
) -> None:
    url, settings = served
    tenant, link, till = _enrolled(url, settings, tmp_path)
    till.command(CARDS, "c1", "issue", {"customer": "Ada", "goal": 4})
    till.command(CARDS, "c1", "stamp", {"count": 3})
    till.sync()
    assert link.tokens is not None
    bearer = {"Authorization": f"Bearer {link.tokens.access_token}"}
    base = url + "/v1/plugins/loyalty"

    # An ordinary plugin route needs a device's token, like every /v1 route.
    anonymous = httpx.get(base + "/cards/c1/link", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == PROBLEM + "unauthenticated"
    missing = httpx.get(base + "/cards/nope/link", headers=bearer, timeout=10)
    assert (missing.status_code, missing.json()["type"]) == (404, PROBLEM + "card-not-found")
    got = httpx.get(base + "/cards/c1/link", headers=bearer, timeout=10)
    assert got.status_code == 200, got.text
    today = time.time_ns() // 86_400_000_000_000
    assert got.json()["expires_day"] in (today + 30, today + 31)
    public_path = got.json()["url"]
    assert public_path.startswith(f"/v1/plugins/loyalty/public/{tenant}/c1?expires=")

    # The public route needs no token: the link's signature authenticates it.
    card = httpx.get(url + public_path, timeout=10)
    assert card.status_code == 200, card.text
    assert card.json() == {
        "card_id": "c1",
        "status": "active",
        "stamps": 3,
        "goal": 4,
        "rewards": 0,
    }
    forged = httpx.get(url + public_path.replace(f"/{tenant}/c1", f"/{tenant}/c2"), timeout=10)
    assert (forged.status_code, forged.json()["type"]) == (403, PROBLEM + "bad-signature")
    unsigned = httpx.get(f"{base}/public/{tenant}/c1?expires=1", timeout=10)
    assert unsigned.status_code == 422
    link.close()


def test_fynlo_serve_names_a_missing_plugin_setting(tmp_path: Path) -> None:
    hook = {"FYNLO_LOYALTY_WEBHOOK_SECRET": HOOK}
    proc, _, log = _serve(tmp_path, _env(tmp_path, FYNLO_LOYALTY_LINK_TTL_DAYS="30", **hook))
    assert proc.wait(timeout=60) == 2
    assert "FYNLO_LOYALTY_LINK_SECRET is not set" in log.read_text()
    assert not (tmp_path / "server.db").exists()  # stopped before it opened the database
    # The same loader, in-process (a second server process would only repeat the above).
    with pytest.raises(SettingsError, match=r"^FYNLO_LOYALTY_LINK_SECRET: Expected `str` of"):
        LoyaltyPlugin.from_env({"FYNLO_LOYALTY_LINK_SECRET": "short", **hook})


def test_the_plugins_invariant_through_fynlo_check_on_the_served_database(
    served: tuple[str, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = served
    tenant, link, till = _enrolled(url, settings, tmp_path)
    till.command(CARDS, "c1", "issue", {"customer": "Bo", "goal": 3})
    till.command(CARDS, "c1", "stamp", {"count": 2})
    till.sync()
    link.close()
    env = {
        "FYNLO_PLUGINS": PLUGINS,
        "FYNLO_LOYALTY_LINK_SECRET": SECRET,
        "FYNLO_LOYALTY_WEBHOOK_SECRET": HOOK,
    }
    code, out, err = run_cli(
        monkeypatch, capsys, settings, "check", "--json", "--tenant", tenant, **env
    )
    assert code == 0, err
    assert json.loads(out)["invariants"] == ["orders:order-total", "loyalty:card-balance"]
    plant(settings, tenant, CARDS, "c1", stamps=3)
    broken = fynlo(settings, "check", "--json", "--tenant", tenant, **env)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["violations"] == [
        {
            "tenant": tenant,
            "plugin": "loyalty",
            "invariant": "card-balance",
            "message": "card c1 holds 3 stamps of 3: a reward not earned",
        }
    ]
    # Without its settings the plugin does not load, so the check cannot run at all.
    for name in ("FYNLO_LOYALTY_LINK_SECRET", "FYNLO_LOYALTY_WEBHOOK_SECRET"):
        monkeypatch.delenv(name)
    code, _, err = run_cli(monkeypatch, capsys, settings, "check", "--json", FYNLO_PLUGINS=PLUGINS)
    assert code == 2
    assert "FYNLO_LOYALTY_LINK_SECRET is not set" in err


def _signed(body: bytes, at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        "Fynlo-Loyalty-Signature": f"t={stamp},v1={webhook_signature(HOOK, stamp, body)}",
        "Content-Type": "application/json",
    }


def test_the_shops_webhook_stamps_once_per_order_through_fynlo_serve(
    served: tuple[str, Settings], tmp_path: Path
) -> None:
    url, settings = served
    tenant, link, till = _enrolled(url, settings, tmp_path)
    till.command(CARDS, "c1", "issue", {"customer": "Cy", "goal": 3})
    till.sync()
    hook = url + "/v1/plugins/loyalty/webhooks/stamp"
    body = json.dumps({"tenant": tenant, "card_id": "c1", "order_id": "web-1", "count": 2})
    raw = body.encode()

    first = httpx.post(hook, content=raw, headers=_signed(raw), timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "applied"
    again = httpx.post(hook, content=raw, headers=_signed(raw), timeout=10)
    assert again.json() == {"status": "rejected", "reason": "duplicate-visit", "seq": 2}

    def refused(content: bytes, headers: dict[str, str]) -> tuple[int, str]:
        got = httpx.post(hook, content=content, headers=headers, timeout=10)
        return got.status_code, got.json()["type"].removeprefix(PROBLEM)

    assert refused(raw, {}) == (403, "bad-signature")
    assert refused(raw, _signed(raw, at=int(time.time()) - 3600)) == (403, "bad-signature")
    assert refused(raw.replace(b"web-1", b"web-2"), _signed(raw)) == (403, "bad-signature")
    other = body.replace('"c1"', '"c404"').encode()
    assert refused(other, _signed(other)) == (404, "card-not-found")
    junk = b'{"tenant": 1}'
    assert refused(junk, _signed(junk)) == (422, "malformed")

    # The server-authored stamp reaches the till through the feed, like any op.
    till.sync()
    card = till.get(CARDS, "c1")
    assert card is not None
    assert (card.fields["stamps"], card.fields["visits"]) == (2, ["web-1"])
    assert card.stamps["stamps"].node_id == "server"
    link.close()


@pytest.fixture
def notice_service() -> Iterator[Callable[[int], str]]:
    """Start the notice service (tests/examples/notice_service.py) in its own process,
    its first ``fail_first`` answers 503; returns its URL. Stopped after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(fail_first: int = 0) -> str:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.examples.notice_service",
                "--fail-first",
                str(fail_first),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        return f"http://127.0.0.1:{int(line.split()[1])}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_notice_service_performs_once_per_key(
    notice_service: Callable[[int], str],
) -> None:
    notices = notice_service(1)
    refused = httpx.post(notices, json={}, headers={"Idempotency-Key": "k1"}, timeout=5)
    assert refused.status_code == 503
    for _ in range(2):
        got = httpx.post(notices, json={"x": 1}, headers={"Idempotency-Key": "k1"}, timeout=5)
        assert got.status_code == 200 and got.json()["notice"] == "k1"
    assert httpx.post(notices, json={}, timeout=5).status_code == 400
    state = httpx.get(notices + "/state", timeout=5).json()
    assert state == {"seen": {"k1": 3}, "performed": ["k1"], "requests": 3}


def _wait_for(what: str, check: Callable[[], bool], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {seconds} s:\n{log.read_text()}")
        time.sleep(0.1)


def test_a_reward_is_noticed_once_through_the_durable_effect(
    tmp_path: Path, notice_service: Callable[[int], str]
) -> None:
    """fynlo serve with FYNLO_LOYALTY_NOTIFY_URL: a stamp that earns a reward plans a
    ``reward_notice`` in the commit; the effect worker calls the notice service (which
    fails its first two answers, so the worker retries with the same key), and authors
    ``noticed`` on the card, which reaches the till."""
    notices = notice_service(2)
    env = _env(
        tmp_path,
        FYNLO_LOYALTY_LINK_SECRET=SECRET,
        FYNLO_LOYALTY_WEBHOOK_SECRET=HOOK,
        FYNLO_LOYALTY_NOTIFY_URL=notices,
    )
    proc, url, log = _serve(tmp_path, env)
    try:
        _wait_ready(proc, url, log)
        tenant, link, till = _enrolled(url, Settings.from_env(env), tmp_path)
        till.command(CARDS, "c1", "issue", {"customer": "Di", "goal": 2})
        till.command(CARDS, "c1", "stamp", {"count": 1})  # no reward: no effect
        till.command(CARDS, "c1", "stamp", {"count": 1})  # the first reward
        till.sync()

        def state() -> dict[str, Any]:
            got: dict[str, Any] = httpx.get(notices + "/state", timeout=5).json()
            return got

        _wait_for("the notice", lambda: len(state()["performed"]) == 1, log)

        def noticed() -> bool:
            till.sync()
            card = till.get(CARDS, "c1")
            return card is not None and card.fields.get("noticed") == 1

        _wait_for("the noticed op on the till", noticed, log)
        seen = state()
        (key,) = seen["performed"]
        assert seen["seen"] == {key: 3}  # two 503s, then done: one key throughout
        assert key.startswith(f"{tenant}/loyalty.reward_notice:{link.node_id}:")
        link.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_reward_notice_is_planned_once_per_reward_only_with_a_notice_url(
    tmp_path: Path,
) -> None:
    quiet = LoyaltyPlugin(LoyaltySettings(SECRET, HOOK))
    loud = LoyaltyPlugin(LoyaltySettings(SECRET, HOOK, notify_url="http://shop.example/n"))
    registry = conflict.registry([OrdersPlugin(), loud])
    server = ServerReplica(MemoryServerStore(), registry)
    till = _till(tmp_path, LoopbackTransport(server, "t1", "a"), registry, "a")
    till.command(CARDS, "c1", "issue", {"customer": "Ed", "goal": 2})
    for _ in range(5):
        till.command(CARDS, "c1", "stamp", {"count": 1})
    till.sync()
    feed = server.store.changes("t1", 0, 100)
    planned = loud.effects(feed)
    assert [(e.name, e.payload["earned"]) for e in planned] == [
        ("reward_notice", 1),
        ("reward_notice", 2),
    ]
    assert [e.key for e in planned] == ["loyalty.reward_notice:a:3", "loyalty.reward_notice:a:5"]
    assert quiet.effects(feed) == []
