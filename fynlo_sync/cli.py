"""The ``fynlo`` command. Each feature registers its own subcommands from its own module,
so this file stays wiring: ``serve``/``migrate``/``tenant``/``device`` (``server.cli``),
``sim``/``demo`` (``fynlo_sync.sim.cli``), ``bench`` (``benchmarks.cli``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Modules with ``register(subparsers)``; a missing optional dependency skips its commands.
COMMAND_MODULES = ("server.cli", "fynlo_sync.sim.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fynlo", description="fynlo-sync command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that feature is not built yet
            sub.add_parser(name.split(".")[0], help=f"unavailable: {exc.name} is not installed")
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"{args.command}: needs an optional dependency that is not installed")
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
