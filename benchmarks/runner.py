"""``python -m benchmarks``: run the benchmarks, print each figure beside its baseline,
write ``benchmarks/results/*.json`` and regenerate ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_apply,
    bench_big,
    bench_catchup,
    bench_e2e,
    bench_effects,
    bench_flood,
    bench_http,
    bench_local,
    bench_pokes,
    bench_pull,
    bench_storm,
    bench_tenants,
)
from benchmarks.context import SCALES, Context
from benchmarks.harness import Skip
from benchmarks.machine import load_average, machine_facts, versions
from benchmarks.progress import Progress
from benchmarks.report import latency_svg, markdown, ratio_svg, text_table, write_text
from benchmarks.result import Result
from benchmarks.workload import orders_registry

__all__ = ["BENCHMARKS", "Benchmark", "main"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Benchmark:
    key: str
    number: int
    title: str
    run: Callable[[Context], list[Result]]


BENCHMARKS: list[Benchmark] = [
    Benchmark("engine-sqlite", 1, "Engine plan + SQLite apply", bench_apply.run_engine_sqlite),
    Benchmark("pull", 3, "Pull: fresh terminal catching up", bench_pull.run_pull),
    Benchmark("local-write", 8, "Terminal local write latency", bench_local.run_local_write),
    Benchmark("server-sqlite", 2, "Server push apply, SQLite", bench_apply.run_server_sqlite),
    Benchmark(
        "server-postgres", 2, "Server push apply, PostgreSQL", bench_apply.run_server_postgres
    ),
    Benchmark("e2e", 4, "End to end over HTTP vs PouchDB", bench_e2e.run_e2e),
    Benchmark("storm", 5, "Reconnect storm", bench_storm.run_storm),
    Benchmark("pokes", 6, "WebSocket pokes", bench_pokes.run_pokes),
    Benchmark("pokes-redis", 6, "WebSocket pokes, 2 servers + Redis", bench_pokes.run_pokes_redis),
    Benchmark(
        "pokes-big",
        6,
        "WebSocket pokes, many sockets, 2 servers + Redis",
        bench_pokes.run_pokes_big,
    ),
    Benchmark("http-push", 7, "HTTP push throughput (SQLite)", bench_http.run_http_push),
    Benchmark(
        "http-push-pg", 7, "HTTP push throughput (Postgres)", bench_http.run_http_push_postgres
    ),
    Benchmark("tenants", 9, "Many tenants on 2 servers (Postgres)", bench_tenants.run_tenants),
    Benchmark("big-tenant", 10, "One tenant growing: push latency", bench_big.run_big_tenant),
    Benchmark("catchup", 11, "Catching up many changes: peak memory", bench_catchup.run_catchup),
    Benchmark(
        "effects", 12, "Push latency with effects in flight", bench_effects.run_effects_latency
    ),
    Benchmark("flood", 13, "Push latency while another tenant floods", bench_flood.run_flood),
]


def _all() -> list[Benchmark]:
    return list(BENCHMARKS)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="fynlo-sync benchmarks: each figure beside its same-run baseline.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--only", default="", help="comma-separated keys (see --list)")
    p.add_argument("--skip", default="", help="comma-separated keys to leave out")
    p.add_argument("--list", action="store_true", help="list the benchmark keys and exit")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="write the markdown table here (default: docs/benchmarks.md on full runs only)",
    )
    p.add_argument("--no-docs", action="store_true", help="do not write the markdown")
    p.add_argument("--profile", action="store_true", help="cProfile each benchmark")
    p.add_argument("--note", default="", help="a note recorded with the run")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("FYNLO_BENCH_POSTGRES_URL")
        or os.environ.get("FYNLO_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("FYNLO_BENCH_REDIS_URL")
        or os.environ.get("FYNLO_TEST_REDIS_URL")
        or "redis://127.0.0.1:6379/0",
    )
    p.add_argument(
        "--skip-pouchdb", action="store_true", help="no PouchDB baseline (no Node, no npm)"
    )
    p.add_argument(
        "--redraw",
        type=Path,
        default=None,
        help="rewrite the docs page and pictures from a results JSON file (no run)",
    )
    p.add_argument("--budget", type=float, default=600.0, help="seconds per benchmark, max")
    return p


def _select(args: argparse.Namespace) -> list[Benchmark]:
    chosen = _all()
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = sorted(set(keys) - {b.key for b in chosen})
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; try --list")
        chosen = [b for b in chosen if b.key in keys]
    if args.skip:
        left_out = {k.strip() for k in args.skip.split(",")}
        chosen = [b for b in chosen if b.key not in left_out]
    return chosen


def _profiled(bench: Benchmark, ctx: Context, out: Path) -> list[Result]:
    profiler = cProfile.Profile()
    results = profiler.runcall(bench.run, ctx)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs()
    text.write(f"# {bench.key}: sorted by own time\n")
    stats.sort_stats("tottime").print_stats(30)
    text.write(f"# {bench.key}: sorted by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(40)
    write_text(out / f"profile-{bench.key}.txt", text.getvalue())
    ctx.progress.note(f"profile written to {out / f'profile-{bench.key}.txt'}")
    return results


def _run_one(bench: Benchmark, ctx: Context, args: argparse.Namespace) -> list[Result]:
    ctx.progress.start(f"({bench.number}) {bench.title} [{bench.key}]")
    start = time.perf_counter()
    try:
        results = _profiled(bench, ctx, args.out) if args.profile else bench.run(ctx)
    except Skip as exc:
        results = [Result(bench.key, bench.number, bench.title, status="skipped", reason=str(exc))]
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        ctx.progress.note(traceback.format_exc())
        results = [Result(bench.key, bench.number, bench.title, status="error", reason=detail)]
    seconds = time.perf_counter() - start
    for r in results:
        r.seconds = r.seconds or seconds
        r.judge()
        if r.status == "ok" and r.figure and r.baseline:
            ctx.progress.done(
                f"{r.figure.text()} vs {r.baseline.text()} baseline = "
                f"{r.ratio:.3g}x; {r.verdict or 'no target'}"
            )
        else:
            ctx.progress.done(f"{r.status}: {r.reason}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for b in _all():
            print(f"{b.key:16} ({b.number}) {b.title}")
        return 0
    if args.redraw is not None:
        return _redraw(args.redraw, args.docs or ROOT / "docs" / "benchmarks.md")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    scale = SCALES[mode]
    chosen = _select(args)
    progress = Progress(total=len(chosen))
    started = datetime.now(UTC)
    facts = machine_facts()
    meta: dict[str, Any] = {
        "schema": 1,
        "suite": "fynlo-sync benchmarks",
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "mode": mode,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": args.note,
        "machine": facts,
        "versions": versions(ROOT),
        "scale": {k: getattr(scale, k) for k in scale.__slots__},
    }
    meta["command"] = meta["command"].strip()
    results: list[Result] = []
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fynlo-bench-") as tmp:
        ctx = Context(
            scale=scale,
            work=Path(tmp),
            root=ROOT,
            progress=progress,
            registry=orders_registry(),
            postgres_url=args.postgres_url,
            redis_url=args.redis_url,
            budget_s=args.budget,
            skip_pouchdb=args.skip_pouchdb,
        )
        try:
            for bench in chosen:
                results += _run_one(bench, ctx, args)
        finally:
            for closer in ctx.cache.get("closers", []):
                closer()
    meta["seconds"] = time.perf_counter() - wall
    facts["load_average_end"] = load_average()
    document = {**meta, "results": [r.as_json() for r in results]}

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    result_path = args.out / f"{stamp}-{mode}.json"
    write_text(result_path, json.dumps(document, indent=1, sort_keys=False) + "\n")
    progress.note(f"results written to {result_path}")

    docs = None if args.no_docs else args.docs
    if docs is None and not args.no_docs and mode == "full" and not args.only:
        docs = ROOT / "docs" / "benchmarks.md"
    if docs is not None:
        _write_docs(docs, results, meta, result_path)
        progress.note(f"table written to {docs}")

    if args.json:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stderr.write(text_table(results) + "\n")
    else:
        sys.stdout.write(text_table(results) + "\n")
    return 1 if any(r.status == "error" for r in results) else 0


def _write_docs(docs: Path, results: list[Result], meta: dict[str, Any], result: Path) -> None:
    pictures: list[tuple[str, str]] = []
    stem = docs.stem
    write_text(docs.parent / f"{stem}-ratios.svg", ratio_svg(results))
    pictures.append(("speed ratios against targets", f"{stem}-ratios.svg"))
    latency = latency_svg(results)
    if latency is not None:
        write_text(docs.parent / f"{stem}-latency.svg", latency)
        pictures.append(("latency distributions", f"{stem}-latency.svg"))
    notes_path = ROOT / "benchmarks" / "NOTES.md"
    notes = notes_path.read_text(encoding="utf-8") if notes_path.exists() else ""
    try:
        shown = str(result.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(result)
    write_text(docs, markdown(results, meta, result_file=shown, pictures=pictures, notes=notes))


def _redraw(result_path: Path, docs: Path) -> int:
    """The docs page from a stored run (after editing NOTES.md or the generator)."""
    document = json.loads(result_path.read_text(encoding="utf-8"))
    results = [Result.from_json(r) for r in document["results"]]
    _write_docs(docs, results, document, result_path)
    sys.stderr.write(f"table written to {docs} from {result_path}\n")
    return 0
