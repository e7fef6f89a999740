"""``fynlo sim`` and ``fynlo demo``: registered into the ``fynlo`` command by
:mod:`fynlo_sync.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        pair = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or N-M") from None
    if pair[0] < 1 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range of positive numbers")
    return pair


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "sim",
        help="run seeded fault schedules against the real engine, client and stores",
        description=(
            "Run K seeded schedules (seeds S, S+1, ...): terminals over SQLite files and a "
            "server replica, a network that drops, duplicates, delays, reorders and "
            "partitions, crashes, clock jumps; invariants checked after every step. On a "
            "failure it prints the seed and the shortest reproduction it found, and exits 1."
        ),
    )
    sim.add_argument("--seed", type=int, default=1, help="first schedule's seed (default 1)")
    sim.add_argument("--schedules", type=int, default=100, help="how many (default 100)")
    sim.add_argument("--terminals", type=_range, default=(2, 5), help="N or N-M (default 2-5)")
    sim.add_argument("--steps", type=_range, default=(15, 40), help="N or N-M (default 15-40)")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument("--replay", type=Path, help="run one schedule from a JSON file")
    sim.add_argument("--trace", action="store_true", help="print each schedule's trace")
    sim.add_argument("--save", type=Path, help="write the shrunk reproduction here (JSON)")
    sim.add_argument("--shrink-budget", type=int, default=400, help="runs spent shrinking")
    sim.add_argument(
        "--payments",
        type=int,
        metavar="N",
        help="instead: N payment attempts under provider faults (lost answers, timeouts, "
        "5xx, crashes, duplicate/reordered/early webhooks, expiry races); reports "
        "double_charges and lost_captures",
    )
    sim.set_defaults(func=_sim)

    demo = subparsers.add_parser(
        "demo",
        help="a restaurant service on the real server: outages, then everything adds up",
        description=(
            "Start the server in-process on a free loopback port over SQLite in a temporary "
            "folder (or use --server-url), run a service with N terminals over HTTP and "
            "WebSockets, cut some off mid-service and bring them back, and report."
        ),
    )
    demo.add_argument("--terminals", type=int, default=6, help="how many terminals (default 6)")
    demo.add_argument("--seed", type=int, default=7, help="makes the workload repeatable")
    demo.add_argument("--server-url", help="use a running server instead of starting one")
    demo.add_argument("--out", type=Path, help="folder for the report and picture")
    demo.add_argument(
        "--ops", type=int, default=0, help="turns per terminal in the service (default 24)"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument(
        "--payments",
        type=int,
        default=0,
        metavar="N",
        help="then pay N orders for real, by bank (sandbox bank) and card (localstripe), "
        "and reconcile them with the providers (needs the payments extra and localstripe)",
    )
    demo.add_argument(
        "--pace", type=float, default=None, help="seconds between rounds (default: 0.12 live)"
    )
    demo.set_defaults(func=_demo, needs=("server",))


def _payments(args: argparse.Namespace) -> int:
    from fynlo_sync.domains.payments.providers.simulation import run

    report = run(args.seed, args.payments, progress=not args.json)
    bad = [
        k
        for k in ("double_charges", "lost_captures", "phantom_captures", "two_live", "live_left")
        if report[k]
    ]
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(
            f"{report['payment_attempts']} payment attempts ({report['orders']} orders): "
            f"double charges {report['double_charges']}, lost captures "
            f"{report['lost_captures']}, phantom captures {report['phantom_captures']}"
        )
        for name, count in report["faults"].items():
            print(f"  {name}: {count}")
    return 1 if bad else 0


def _sim(args: argparse.Namespace) -> int:
    if args.payments is not None:
        return _payments(args)
    from fynlo_sync.sim.runner import RunResult, run_many, run_schedule
    from fynlo_sync.sim.schedule import Schedule

    if args.replay is not None:
        schedule = Schedule.from_json(json.loads(args.replay.read_text()))
        result = run_schedule(schedule)
        if args.json:
            print(
                json.dumps(
                    {
                        "seed": schedule.seed,
                        "ok": result.ok,
                        "failure": None if result.failure is None else result.failure.to_json(),
                        "trace_hash": result.trace_hash,
                        "trace": result.trace.splitlines(),
                    },
                    indent=2,
                )
            )
        else:
            sys.stdout.write(result.trace)
            print(f"trace hash {result.trace_hash}")
        return 0 if result.ok else 1

    def progress(result: RunResult) -> None:
        if args.trace:
            sys.stdout.write(result.trace)
            print(f"trace hash {result.trace_hash}\n")
        elif not args.json:
            mark = "." if result.ok else "F"
            sys.stderr.write(mark)
            if result.schedule.seed % 80 == 79:
                sys.stderr.write("\n")
            sys.stderr.flush()

    summary = run_many(
        args.seed,
        args.schedules,
        terminals=args.terminals,
        steps=args.steps,
        shrink_budget=args.shrink_budget,
        progress=progress,
    )
    from fynlo_sync.sim.effects import run_effect_faults

    effects = run_effect_faults(args.seed)
    if args.save is not None and summary.reproduction is not None:
        args.save.write_text(json.dumps(summary.reproduction.to_json(), indent=2) + "\n")
    if args.json:
        print(json.dumps({**summary.to_json(), "effects": effects.to_json()}, indent=2))
    else:
        if not args.trace:
            sys.stderr.write("\n")
        _print_summary(summary.to_json(), args.save)
        fired = ", ".join(f"{k} {v}" for k, v in sorted(effects.faults.items()))
        print(
            f"effects: {effects.effects} performed exactly once in {effects.attempts} attempts"
            f" (faults: {fired or 'none'})"
            if effects.ok
            else "effects: " + "; ".join(effects.violations)
        )
    return 0 if not summary.failures and effects.ok else 1


def _print_summary(data: dict[str, Any], saved: Path | None) -> None:
    print(
        f"{data['schedules']} schedules from seed {data['seed']}: {data['steps']} steps, "
        f"{data['invariant_checks']} invariant checks (+{data['commit_checks']} after "
        f"terminal commits), {data['ops_made']} ops made, "
        f"{data['seconds']} s"
    )
    print("faults fired: " + ", ".join(f"{k} {v}" for k, v in data["faults"].items()))
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in data["outcomes"].items()))
    print(f"trace hash {data['trace_hash']}")
    if not data["failures"]:
        print("failures: 0")
        return
    failure = data["failure"]
    print(
        f"FAILED: seed {failure['seed']} broke {failure['invariant']} at step "
        f"{failure['step']}: {failure['detail']}"
    )
    repro = data.get("reproduction")
    if repro is not None:
        print(f"shortest reproduction found ({repro['shrink_runs']} runs spent shrinking):")
        schedule = repro["schedule"]
        print(
            f"  {schedule['terminals']} terminal(s), {schedule['tenants']} tenant(s), "
            f"batch {schedule['batch_size']}, page {schedule['page_size']}"
        )
        for i, step in enumerate(repro["steps"]):
            print(f"  {i:02d} {step}")
        if repro["failure"] is not None:
            print(f"  -> {repro['failure']['invariant']}: {repro['failure']['detail']}")
        print(
            "rerun it: fynlo sim --replay FILE (save it with --save FILE); the unshrunk "
            f"schedule: fynlo sim --seed {failure['seed']} --schedules 1 --trace"
        )


def _demo(args: argparse.Namespace) -> int:
    from fynlo_sync.sim.demo import main

    code: int = main(args)
    return code
