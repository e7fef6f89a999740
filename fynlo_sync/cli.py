"""The ``fynlo`` command: wiring only. Each feature registers its own subcommands from its
own module, named in :data:`COMMAND_MODULES`.

The rule for a command module (``tests/core/test_cli.py`` enforces it for every module in
:data:`COMMAND_MODULES`, and ``tests/core/test_wheel.py`` on a base install of the wheel):

1. It has ``register(subparsers)``, which adds its commands with ``argparse`` and
   ``set_defaults(func=handler)``.
2. **It imports only the standard library at top level** (and ``from __future__``); its
   package's ``__init__`` must import nothing beyond the base dependencies either. The
   feature's code and every package of an extra are imported *inside the handler*. So every
   command, with its ``--help``, is listed on every install, whatever extras it has.
3. A command that needs an extra says so: ``set_defaults(func=handler, needs=("server",))``
   (checked before the handler runs), or, when it depends on the settings, the handler calls
   :func:`require` (e.g. ``require("postgres")`` for a PostgreSQL URL). Either way a missing
   extra prints ``fynlo <command>: ... pip install 'fynlo-sync[<extra>]'`` and exits 2, and
   so does a :class:`~fynlo_sync.errors.MissingDependencyError` or an import of a package
   :data:`EXTRAS` knows, raised from the handler.

A module in :data:`COMMAND_MODULES` that is absent (``benchmarks.cli`` in an installed
wheel) is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["COMMAND_MODULES", "EXTRAS", "ExtraMissing", "build_parser", "main", "require"]

#: Modules with ``register(subparsers)`` (see the rule above).
COMMAND_MODULES = (
    "server.cli",
    "fynlo_sync.sim.cli",
    "fynlo_sync.sandbox.cli",
    "fynlo_sync.plugin_cli",
    "fynlo_sync.domains.payments.providers.cli",
    "fynlo_sync.store.cli",
    "fynlo_sync.domains.payments.cli",
    "server.staff_cli",  # after payments: it adds `labour` to their `report`
)

#: The import names of each optional extra's packages (``pyproject.toml`` declares them; a
#: test holds the two together).
EXTRAS: dict[str, tuple[str, ...]] = {
    "client": ("httpx", "websockets"),
    "server": (
        "litestar",
        "uvicorn",
        "h11",
        "anyio",
        "jwt",
        "argon2",
        "rich",
        "prometheus_client",
        "structlog",
        "httpx",
        "websockets",
    ),
    "postgres": ("asyncpg", "anyio"),
    "redis": ("redis",),
    "payments": ("stripe", "qrcode", "png", "httpx", "websockets"),
}


class ExtraMissing(Exception):
    """A command needs an extra that is not installed (``fynlo`` exits 2)."""

    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"needs the {extra!r} extra ({package} is not installed): "
            f"pip install 'fynlo-sync[{extra}]'"
        )
        self.extra = extra
        self.package = package


def require(*extras: str) -> None:
    """Raise :class:`ExtraMissing` unless every package of each named extra imports."""
    for extra in extras:
        for package in EXTRAS[extra]:
            if importlib.util.find_spec(package) is None:
                raise ExtraMissing(extra, package)


def _extra_of(package: str) -> str | None:
    for extra in ("client", "postgres", "redis", "payments", "server"):
        if package in EXTRAS[extra]:
            return extra
    return None


def _version() -> str:
    from fynlo_sync import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fynlo", description="fynlo-sync command line")
    parser.add_argument("--version", action="version", version=f"fynlo-sync {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that module is not part of this install
            print(
                f"fynlo: the commands of {name} are unavailable: {exc.name} is not installed "
                "(a bug: a command module imports only the standard library at top level)",
                file=sys.stderr,
            )
            continue
        module.register(sub)
    return parser


def _missing(command: str, exc: BaseException) -> int | None:
    """Exit code 2 with the install hint when ``exc`` is a missing extra; else ``None``."""
    from fynlo_sync.errors import MissingDependencyError

    if isinstance(exc, ExtraMissing):
        message = str(exc)
    elif isinstance(exc, MissingDependencyError):
        message = exc.detail
    elif isinstance(exc, ModuleNotFoundError) and exc.name:
        package = exc.name.split(".")[0]
        extra = _extra_of(package)
        if extra is None:
            return None
        message = str(ExtraMissing(extra, package))
    else:
        return None
    print(f"fynlo {command}: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Any = args.func
    try:
        require(*getattr(args, "needs", ()))
        result: int = func(args)
    except (ImportError, ExtraMissing) as exc:
        code = _missing(args.command, exc)
        if code is None:
            raise
        return code
    return result


if __name__ == "__main__":
    sys.exit(main())
