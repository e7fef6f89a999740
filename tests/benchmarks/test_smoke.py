"""The benchmarks run at a tiny size and write what they promise. No timing is asserted:
only that each benchmark produced a figure and a same-run baseline, and the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORE = "engine-sqlite,pull,local-write,server-sqlite"


def run(tmp: Path, only: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--tiny",
            "--json",
            "--only",
            only,
            "--out",
            str(tmp / "results"),
            "--docs",
            str(tmp / "docs" / "benchmarks.md"),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, json.loads(proc.stdout)  # stdout is exactly one JSON object


def test_core_benchmarks_run_and_write_results(tmp_path: Path) -> None:
    proc, doc = run(tmp_path, CORE, "--note", "smoke test")
    results = {r["key"]: r for r in doc["results"]}
    assert set(results) == {
        "engine-sqlite",
        "pull",
        "local-write",
        "server-sqlite-b100",
    }
    for r in results.values():
        assert r["status"] == "ok", r
        assert r["figure"]["value"] > 0
        assert r["baseline"]["value"] > 0
        assert r["ratio"] > 0
    # a target was judged, whichever way it went
    assert results["engine-sqlite"]["met"] in (True, False)
    assert results["local-write"]["met"] in (True, False)
    assert len(results["local-write"]["distributions"]["local write"]) == 101
    assert doc["mode"] == "tiny"
    assert doc["note"] == "smoke test"
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["versions"]["sqlite"]

    # progress went to stderr, the same table too
    assert "[1/4]" in proc.stderr and "baseline" in proc.stderr
    written = sorted((tmp_path / "results").glob("*-tiny.json"))
    assert len(written) == 1
    assert json.loads(written[0].read_text())["results"] == doc["results"]

    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "| 1 | Engine plan + SQLite apply |" in page
    assert "Terminal local write latency" in page
    for svg in ("benchmarks-ratios.svg", "benchmarks-latency.svg"):
        root = ET.parse(tmp_path / "docs" / svg).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) >= (
            2 if "latency" in svg else 0
        )


def test_list_names_every_benchmark() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for key in CORE.split(","):
        assert key in proc.stdout


SERVER = "e2e,storm,pokes,http-push,flood"


def test_server_benchmarks_run_against_a_real_server(tmp_path: Path) -> None:
    _, doc = run(tmp_path, SERVER, "--skip-pouchdb")
    results = {r["key"]: r for r in doc["results"]}
    assert set(results) == {"e2e", "storm", "pokes", "http-push-sqlite", "flood"}
    for r in results.values():
        assert r["status"] == "ok", r
        assert r["figure"]["value"] > 0
    e2e = results["e2e"]
    assert e2e["baseline"] is None and "skip-pouchdb" in e2e["reason"]
    for key in ("storm", "pokes", "http-push-sqlite", "flood"):
        assert results[key]["baseline"]["value"] > 0
        assert results[key]["ratio"] > 0
    assert results["storm"]["details"]["terminals_converged"] == 2
    cache = results["storm"]["details"]
    assert cache["page_cache_hits"] + cache["page_cache_misses"] >= 2  # counted in /metrics
    assert results["pokes"]["details"]["p99_ms"] >= results["pokes"]["details"]["p50_ms"]
    flood = results["flood"]["details"]
    assert flood["flood_429"] > 0 and flood["flood_other"] == 0  # it flooded, and was refused
    assert flood["ratio_p50"] > 0


def test_service_benchmarks_run_on_postgres_and_redis(
    tmp_path: Path, postgres_session_url: str, redis_url: str
) -> None:
    admin = os.environ.get("FYNLO_TEST_POSTGRES_URL", postgres_session_url)
    _, doc = run(
        tmp_path,
        "server-postgres,http-push-pg,pokes-redis",
        "--postgres-url",
        admin,
        "--redis-url",
        redis_url,
    )
    results = {r["key"]: r for r in doc["results"]}
    assert set(results) == {"server-postgres-b100", "http-push-postgres", "pokes-redis"}
    for r in results.values():
        assert r["status"] == "ok", r
        assert r["figure"]["value"] > 0 and r["baseline"]["value"] > 0
    assert results["server-postgres-b100"]["met"] in (True, False)


def test_scale_benchmarks_run_at_a_tiny_size(
    tmp_path: Path, postgres_session_url: str, redis_url: str
) -> None:
    """Issue 13's benchmarks: many tenants, a growing tenant, a long catch-up's memory (no
    figure is asserted). (pokes-big is pokes-redis with more sockets.)"""
    admin = os.environ.get("FYNLO_TEST_POSTGRES_URL", postgres_session_url)
    _, doc = run(
        tmp_path,
        "tenants,big-tenant,catchup",
        "--postgres-url",
        admin,
        "--redis-url",
        redis_url,
    )
    results = {r["key"]: r for r in doc["results"]}
    assert set(results) == {"tenants", "big-tenant", "catchup"}
    for r in results.values():
        assert r["status"] == "ok", r
        assert r["figure"]["value"] > 0 and r["baseline"]["value"] > 0 and r["ratio"] > 0
    assert results["tenants"]["params"]["tenants"] == [1, 2]
    assert results["catchup"]["details"]["big_records"] == 400
    assert set(results["big-tenant"]["distributions"]) == {
        "push at 0 records",
        "push at 500 records",
    }
