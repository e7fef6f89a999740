"""Administration from Python (the CLI calls these too): migrate, create tenants, enroll and
revoke devices. The synchronous functions open the database that ``settings`` names, do
one thing, and close it; async code uses :func:`open_accounts` instead.

    from server import Settings
    from server.admin import create_tenant, enroll_device

    settings = Settings.from_env()
    tenant = create_tenant(settings, "Cafe Nero, Leeds")
    code = enroll_device(settings, tenant).enrollment_code
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

import conflict
from server.accounts import Accounts, DeviceState, Enrollment
from server.backends import open_backend
from server.settings import Settings

if TYPE_CHECKING:
    from fynlo_sync.effects import EffectRow

__all__ = [
    "create_tenant",
    "enroll_device",
    "list_devices",
    "list_effects",
    "retry_effect",
    "migrate",
    "open_accounts",
    "revoke_device",
]

T = TypeVar("T")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _ignore(tenant: str, cursor: int) -> None:
    pass


@asynccontextmanager
async def open_accounts(settings: Settings) -> AsyncIterator[Accounts]:
    """The account store of ``settings``' database, migrated, for the length of the block."""
    backend = await open_backend(settings, conflict.registry(), _wall_ms, _ignore, migrate=True)
    try:
        yield backend.accounts
    finally:
        await backend.close()


def _run(settings: Settings, job: Callable[[Accounts], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_accounts(settings) as accounts:
            return await job(accounts)

    return anyio.run(main)


def migrate(settings: Settings) -> None:
    """Apply every pending migration (sync tables and account tables)."""

    async def nothing(_: Accounts) -> None:
        return None

    _run(settings, nothing)


def create_tenant(settings: Settings, name: str, tenant_id: str | None = None) -> str:
    """Create a tenant; returns its id (made up unless ``tenant_id`` is given)."""
    return _run(settings, lambda accounts: accounts.create_tenant(name, tenant_id))


def enroll_device(
    settings: Settings, tenant_id: str, node_id: str | None = None, role: str | None = None
) -> Enrollment:
    """A one-use, expiring enrollment code for a new device of ``tenant_id`` (or for
    ``node_id`` again); ``role``: ``terminal`` (default) or ``manager``."""
    return _run(settings, lambda accounts: accounts.enroll(tenant_id, node_id, role))


def revoke_device(settings: Settings, tenant_id: str, node_id: str) -> None:
    """Cut a device off at once: its tokens stop working on the next request."""
    _run(settings, lambda accounts: accounts.revoke(tenant_id, node_id))


def list_devices(settings: Settings, tenant_id: str) -> list[DeviceState]:
    return _run(settings, lambda accounts: accounts.devices(tenant_id))


def _with_backend(settings: Settings, job: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        backend = await open_backend(settings, conflict.registry(), _wall_ms, _ignore, migrate=True)
        try:
            return await job(backend)
        finally:
            await backend.close()

    return anyio.run(main)


def list_effects(
    settings: Settings, tenant_id: str | None = None, state: str | None = None
) -> list[EffectRow]:
    """The durable effects (every tenant's, or one's), optionally in one state, with every
    attempt."""
    rows: list[EffectRow] = _with_backend(
        settings, lambda backend: backend.effect_rows(tenant_id, state)
    )
    return rows


def retry_effect(settings: Settings, tenant_id: str, key: str) -> bool:
    """Make a dead effect due now with a fresh failure budget (a running server's worker
    picks it up at its next poll). False if it is not dead."""
    done: bool = _with_backend(settings, lambda backend: backend.retry_effect(tenant_id, key))
    return done
