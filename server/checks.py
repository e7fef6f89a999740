"""``fynlo check``: every plugin's invariants against a live database (embedded SQLite or
PostgreSQL), tenant by tenant. The checks are the plugins' pure
:class:`~fynlo_sync.plugins.Invariant` functions, the same the simulator runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from fynlo_sync.plugins import InvariantViolation, Registry
from server.backends import open_backend
from server.settings import Settings

__all__ = ["CheckReport", "TenantViolation", "check_database"]


@dataclass(frozen=True, slots=True)
class TenantViolation:
    tenant: str
    violation: InvariantViolation

    def to_json(self) -> dict[str, str]:
        return {
            "tenant": self.tenant,
            "plugin": self.violation.plugin,
            "invariant": self.violation.invariant,
            "message": self.violation.message,
        }


@dataclass
class CheckReport:
    database: str
    invariants: list[str]
    tenants: int = 0
    records: int = 0
    violations: list[TenantViolation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "database": self.database,
            "invariants": self.invariants,
            "tenants": self.tenants,
            "records": self.records,
            "violations": [v.to_json() for v in self.violations],
        }


def _ignore(tenant: str, cursor: int) -> None:
    pass


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def check_database(
    settings: Settings,
    registry: Registry,
    tenants: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Run ``registry``'s invariants over every tenant of ``settings``' database (or just
    ``tenants``); ``progress(done, total)`` is called after each tenant. Reads only."""

    async def main() -> CheckReport:
        backend = await open_backend(settings, registry, _wall_ms, _ignore, migrate=False)
        try:
            names = list(tenants) or [t for t, _ in await backend.accounts.tenants()]
            report = CheckReport(settings.kind, [f"{p}:{i.name}" for p, i in registry.invariants()])
            for done, tenant in enumerate(sorted(names), start=1):
                records = await backend.records(tenant)
                report.tenants += 1
                report.records += sum(not r.deleted for r in records)
                report.violations.extend(
                    TenantViolation(tenant, v) for v in registry.check_invariants(records)
                )
                if progress is not None:
                    progress(done, len(names))
            return report
        finally:
            await backend.close()

    return anyio.run(main)
