"""Prometheus figures from ``fynlo serve --workers 2`` (multiprocess mode): every push
counted once whichever worker served it and whichever worker answers the scrape; and the
Grafana dashboard in docs/ asks only for metrics the server exports."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from server.settings import Settings
from tests.server.test_logs import _serve, _stop
from tests.server.test_scale_out import orders_batch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _value(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert found is not None, f"{name}{{{labels}}} not in /metrics"
    return float(found.group(1))


def _pushing_pids(folder: Path) -> set[str]:
    """The worker processes whose counter file counts a push."""
    from prometheus_client.mmap_dict import MmapedDict

    out = set()
    for path in folder.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            if '"fynlo_pushes_total"' in key and value > 0:
                out.add(path.stem.rsplit("_", 1)[1])
    return out


def test_two_workers_count_every_push_once(
    make_postgres_database: Callable[[], str],
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    settings = Settings(
        database_url=make_postgres_database(),
        redis_url=redis_url,
        secret_key=secrets.token_urlsafe(32),
        redis_prefix="FYNLO_TEST_" + secrets.token_hex(4),
    )
    proc, url = _serve(settings, tmp_path / "server.log", "--workers", "2")
    try:
        tenant = admin.create_tenant(settings, "two workers")
        pushes = 0
        listener_link = HttpTransport.enroll(
            url, admin.enroll_device(settings, tenant).enrollment_code
        )
        with PokeListener(listener_link) as listener:
            assert listener.connected.wait(10)
            # A fresh connection per device: the kernel hands them to both workers.
            while pushes < 60 and (pushes < 8 or len(_pushing_pids(folder)) < 2):
                code = admin.enroll_device(settings, tenant).enrollment_code
                link = HttpTransport.enroll(url, code)
                link.push(orders_batch(link.node_id, 1, 2))
                link.close()
                pushes += 1
            assert len(_pushing_pids(folder)) >= 2, "one worker took every connection"
            scrapes = [httpx.get(url + "/metrics", timeout=10).text for _ in range(6)]
            assert listener.next(10) is not None
        for text in scrapes:
            assert _value(text, "fynlo_pushes_total", 'result="ok"') == pushes
            assert _value(text, "fynlo_ops_total", 'outcome="applied"') == 2 * pushes
            assert _value(text, "fynlo_push_seconds_count") == pushes
        last = httpx.get(url + "/metrics", timeout=10).text
        assert _value(last, "fynlo_pokes_sent_total") >= 1
        assert _value(last, "fynlo_sockets_open") == 0  # the listener has gone
        listener_link.close()
    finally:
        _stop(proc)
    logged = (tmp_path / "server.log").read_text().splitlines()
    events = [json.loads(line)["event"] for line in logged if line.strip()]  # all JSON
    assert events.count("push") == pushes


def test_the_dashboard_asks_for_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {m for e in exprs for m in re.findall(r"\b(fynlo_[a-z_]+)", e)}
    from prometheus_client.metrics import MetricWrapperBase

    from server import observe

    exported = {"fynlo_requests_total"}  # Litestar's, with the app's prefix
    for value in vars(observe).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                exported.add(family.name)
                exported.add(family.name + "_total")
                exported.add(family.name + "_bucket")
    assert names and names <= exported, names - exported


def test_effects_are_counted_queued_and_performed(tmp_path: Path) -> None:
    """An order sent to the kitchen writes a kitchen_ticket effect with the commit; the
    worker performs it; both are counted (deltas: the registry is the process's)."""
    from fynlo_sync.ops import Batch
    from server.testing import LocalServer
    from tests.server.conftest import note_op

    def effects(url: str) -> dict[str, float]:
        text = httpx.get(url + "/metrics", timeout=10).text
        found = re.findall(r'^fynlo_effects_total\{event="(\w+)"\} (\S+)$', text, re.MULTILINE)
        return {event: float(value) for event, value in found}

    with LocalServer.start(tmp_path) as srv:
        before = effects(srv.url)
        link = srv.connect(srv.create_tenant("kitchen"))
        node = link.node_id
        line = {"line_id": "l1", "item": "tea", "qty": 1, "unit_price": 250}
        steps = [("open", {"currency": "GBP"}), ("add_line", line), ("send_to_kitchen", {})]
        ops = [
            note_op(
                node,
                seq,
                collection="orders",
                record_id="o-1",
                kind="command",
                fields=None,
                name=name,
                args=args,
            )
            for seq, (name, args) in enumerate(steps, start=1)
        ]
        link.push(Batch.of(node, ops))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = effects(srv.url)
            if after.get("performed", 0) > before.get("performed", 0):
                break
            time.sleep(0.05)
        link.close()
    assert after.get("queued", 0) - before.get("queued", 0) == 1
    assert after.get("performed", 0) - before.get("performed", 0) == 1
    assert after.get("dead", 0) == before.get("dead", 0)
