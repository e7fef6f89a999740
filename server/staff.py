"""Staff on the server: PIN secrets, online sign-in with lockout, offline failure reports.

The staff plugin's server module (``StaffPlugin.server_module``): routes under
``/v1/plugins/staff`` and a lifespan hook that migrates its tables (the ``staff``
component, in the accounts database, through the one migration runner).

* A PIN's argon2id hash is kept only here (``fynlo_staff_pins``); the ``employees`` record a
  terminal receives says only ``pin_set``. Hashing and verifying run in a worker thread,
  off the event loop.
* ``POST /v1/plugins/staff/sign-in`` ``{"employee_id", "pin"}``: the device's and the
  employee's throttles (:mod:`fynlo_sync.domains.staff.pins`) are checked *before* the
  hash, under one transaction; a refusal is ``429 pin-locked`` with ``retry_after_ms``, a
  wrong PIN ``403 pin-refused``. On success the answer carries the employee's role and
  permissions, the session's idle timeout, and an *offline verifier*: a fresh argon2id hash
  of the PIN (its own salt; the stored hash never leaves) valid for the tenant's
  ``FYNLO_STAFF_OFFLINE_PIN_TTL_S``, so the terminal can sign the employee in again while the
  internet is down.
* ``POST /v1/plugins/staff/failures`` ``{"failures": [{"employee_id", "at_ms"}]}``: failed
  offline attempts, reported at the next sync, counted into both throttles.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from fynlo_sync.domains.staff import EMPLOYEES, employee_permissions
from fynlo_sync.domains.staff.pins import (
    DEVICE_POLICY,
    EMPLOYEE_POLICY,
    PinPolicy,
    Throttle,
    after_failure,
    after_success,
    check_pin,
    retry_after_ms,
)
from fynlo_sync.errors import CallerError, FynloError
from fynlo_sync.ops import Outcome
from fynlo_sync.plugins import Draft
from fynlo_sync.store.migrations import Component
from fynlo_sync.store.sqlport import SqlConn, SqlPort
from server.auth import AccessToken, Device
from server.plugins import PluginContext

__all__ = [
    "ROUTES",
    "STAFF_COMPONENT",
    "PinLockedError",
    "PinRefusedError",
    "SignIn",
    "StaffSecrets",
    "add_employee",
    "audit",
    "deactivate_employee",
    "lifespan",
    "list_employees",
    "run_admin",
    "set_employee_pin",
]

T = TypeVar("T")

STAFF_COMPONENT = Component(
    "staff",
    (
        """
        CREATE TABLE fynlo_staff_pins (
            tenant_id TEXT NOT NULL,
            employee_id TEXT NOT NULL,
            pin_hash TEXT NOT NULL,
            updated_ms BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, employee_id)
        );
        CREATE TABLE fynlo_staff_throttle (
            tenant_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            failures TEXT NOT NULL,
            consecutive INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, scope, subject)
        )
        """,
    ),
)

# argon2id (argon2-cffi's default type), OWASP's minimum settings.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class PinRefusedError(CallerError):
    """A wrong PIN. 403, not 401: a 401 means the *device's* token failed, and clients
    refresh it and resend (which would count the guess twice)."""

    code = "pin-refused"
    status = 403


class PinLockedError(CallerError):
    code = "pin-locked"
    status = 429


class UnknownEmployeeError(CallerError):
    code = "employee-not-found"
    status = 404


@dataclass(frozen=True, slots=True)
class SignIn:
    employee_id: str
    role: str
    permissions: list[str]
    offline_verifier: str
    offline_expires_ms: int


async def _hash(pin: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, pin)


async def _verify(stored: str, pin: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(stored, pin)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(run)


class StaffSecrets:
    """PIN hashes and throttles over the accounts database."""

    def __init__(self, db: SqlPort) -> None:
        self.db = db

    async def migrate(self) -> list[int]:
        return await self.db.migrate(STAFF_COMPONENT)

    async def set_pin(self, tenant: str, employee: str, pin: str, now_ms: int) -> None:
        digest = await _hash(check_pin_or_refuse(pin))
        async with self.db.transaction() as tx:
            await tx.execute(
                "DELETE FROM fynlo_staff_pins WHERE tenant_id = $1 AND employee_id = $2",
                tenant,
                employee,
            )
            await tx.execute(
                "INSERT INTO fynlo_staff_pins (tenant_id, employee_id, pin_hash, updated_ms)"
                " VALUES ($1, $2, $3, $4)",
                tenant,
                employee,
                digest,
                now_ms,
            )
            # A new PIN clears the employee's lockout (a manager's reset).
            await tx.execute(
                "DELETE FROM fynlo_staff_throttle WHERE tenant_id = $1 AND scope = 'employee'"
                " AND subject = $2",
                tenant,
                employee,
            )

    async def has_pin(self, tenant: str, employee: str) -> bool:
        row = await self.db.fetchrow(
            "SELECT 1 FROM fynlo_staff_pins WHERE tenant_id = $1 AND employee_id = $2",
            tenant,
            employee,
        )
        return row is not None

    async def _throttle(self, tx: SqlConn, tenant: str, scope: str, subject: str) -> Throttle:
        row = await tx.fetchrow(
            "SELECT failures, consecutive FROM fynlo_staff_throttle"
            " WHERE tenant_id = $1 AND scope = $2 AND subject = $3",
            tenant,
            scope,
            subject,
        )
        if row is None:
            return Throttle()
        return Throttle(tuple(json.loads(row[0])), int(row[1]))

    async def _save(
        self, tx: SqlConn, tenant: str, scope: str, subject: str, throttle: Throttle
    ) -> None:
        await tx.execute(
            "DELETE FROM fynlo_staff_throttle WHERE tenant_id = $1 AND scope = $2 AND subject = $3",
            tenant,
            scope,
            subject,
        )
        await tx.execute(
            "INSERT INTO fynlo_staff_throttle (tenant_id, scope, subject, failures, consecutive)"
            " VALUES ($1, $2, $3, $4, $5)",
            tenant,
            scope,
            subject,
            json.dumps(list(throttle.failures_ms)),
            throttle.consecutive,
        )

    async def verify(self, tenant: str, node: str, employee: str, pin: str, now_ms: int) -> None:
        """Raise :class:`PinLockedError` or :class:`PinRefusedError`, or return (signed
        in). The throttles are read and written in one transaction with the check."""
        scopes: tuple[tuple[str, str, PinPolicy], ...] = (
            ("employee", employee, EMPLOYEE_POLICY),
            ("device", node, DEVICE_POLICY),
        )
        async with self.db.transaction() as tx:
            throttles = [await self._throttle(tx, tenant, s, k) for s, k, _ in scopes]
            wait = max(
                retry_after_ms(t, now_ms, policy)
                for t, (_, _, policy) in zip(throttles, scopes, strict=True)
            )
            if wait > 0:
                raise PinLockedError(
                    f"too many wrong PINs: try again in {(wait + 999) // 1000} s",
                    retry_after_ms=wait,
                )
            row = await tx.fetchrow(
                "SELECT pin_hash FROM fynlo_staff_pins WHERE tenant_id = $1 AND employee_id = $2",
                tenant,
                employee,
            )
            ok = row is not None and await _verify(str(row[0]), pin)
            for throttle, (scope, subject, policy) in zip(throttles, scopes, strict=True):
                new = after_success(throttle) if ok else after_failure(throttle, now_ms, policy)
                await self._save(tx, tenant, scope, subject, new)
        if not ok:
            raise PinRefusedError("wrong PIN (or no PIN set)")

    async def report_failures(
        self, tenant: str, node: str, failures: list[tuple[str, int]], now_ms: int
    ) -> int:
        """Count failed offline attempts (at their device time, never in the future)."""
        async with self.db.transaction() as tx:
            device = await self._throttle(tx, tenant, "device", node)
            for employee, at_ms in sorted(failures, key=lambda f: f[1]):
                when = min(at_ms, now_ms)
                t = await self._throttle(tx, tenant, "employee", employee)
                await self._save(
                    tx, tenant, "employee", employee, after_failure(t, when, EMPLOYEE_POLICY)
                )
                device = after_failure(device, when, DEVICE_POLICY)
            await self._save(tx, tenant, "device", node, device)
        return len(failures)


def check_pin_or_refuse(pin: object) -> str:
    try:
        return check_pin(pin)
    except ValueError as exc:
        raise CallerError(str(exc), reason="invalid-pin") from None


class SignInRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    employee_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    pin: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SignInResponse(msgspec.Struct, frozen=True):
    employee_id: str
    role: str
    permissions: list[str]
    session_idle_s: int
    offline_verifier: str
    offline_expires_ms: int


class Failure(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    employee_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    at_ms: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


class FailureReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    failures: Annotated[list[Failure], msgspec.Meta(max_length=1000)]


class FailureAnswer(msgspec.Struct, frozen=True):
    counted: int


def _secrets(plugin: PluginContext) -> StaffSecrets:
    return StaffSecrets(plugin.backend.accounts.db)


DeviceRequest = Request[Device, AccessToken, Any]


@post("/sign-in", status_code=200)
async def sign_in(
    request: DeviceRequest, plugin: NamedDependency[PluginContext], data: JSONBody[SignInRequest]
) -> SignInResponse:
    """Verify an employee's PIN on this device (throttled per employee and per device)."""
    tenant, node = request.user.tenant_id, request.user.node_id
    now = plugin.now_ms()
    rows = await plugin.backend.load(tenant, [(EMPLOYEES, data.employee_id)])
    record = rows.get((EMPLOYEES, data.employee_id))
    await _secrets(plugin).verify(tenant, node, data.employee_id, data.pin, now)
    if record is None or record.deleted or record.fields.get("active") is not True:
        raise PinRefusedError("wrong PIN (or no PIN set)")
    settings = plugin.settings
    ttl_s = 12 * 3600 if settings is None else settings.offline_pin_ttl_s
    idle_s = 300 if settings is None else settings.session_idle_s
    return SignInResponse(
        employee_id=data.employee_id,
        role=str(record.fields["role"]),
        permissions=sorted(employee_permissions(record.fields)),
        session_idle_s=idle_s,
        offline_verifier=await _hash(data.pin),
        offline_expires_ms=now + ttl_s * 1000,
    )


@post("/failures", status_code=200)
async def failures(
    request: DeviceRequest, plugin: NamedDependency[PluginContext], data: JSONBody[FailureReport]
) -> FailureAnswer:
    """Failed offline PIN attempts, reported by the terminal at its next sync."""
    counted = await _secrets(plugin).report_failures(
        request.user.tenant_id,
        request.user.node_id,
        [(f.employee_id, f.at_ms) for f in data.failures],
        plugin.now_ms(),
    )
    return FailureAnswer(counted)


@asynccontextmanager
async def lifespan(ctx: PluginContext) -> AsyncIterator[None]:
    await StaffSecrets(ctx.backend.accounts.db).migrate()
    yield


ROUTES = [sign_in, failures]


# ------------------------------------------------------------------ administration (CLI)


def _require_staff(backend: Any) -> None:
    try:
        backend.replica.registry.collection(EMPLOYEES)
    except FynloError:
        raise CallerError(
            "the staff plugin is not loaded: add fynlo_sync.domains.staff:StaffPlugin to "
            "FYNLO_PLUGINS"
        ) from None


async def author_one(backend: Any, tenant: str, draft: Draft) -> Outcome:
    """One command as node ``server``; a rejection becomes a CallerError naming its reason."""
    _require_staff(backend)
    outcome: Outcome = (await backend.author(tenant, [draft])).outcomes[0]
    if outcome.status == "rejected":
        raise CallerError(f"{outcome.reason}: {outcome.detail}", reason=outcome.reason)
    return outcome


async def add_employee(
    backend: Any,
    tenant: str,
    employee_id: str,
    name: str,
    role: str,
    *,
    wage_per_hour: int | None = None,
    currency: str | None = None,
) -> Outcome:
    args: dict[str, Any] = {"name": name, "role": role}
    if wage_per_hour is not None or currency is not None:
        args.update(wage_per_hour=wage_per_hour, currency=currency)
    return await author_one(backend, tenant, Draft.command(EMPLOYEES, employee_id, "add", args))


async def deactivate_employee(backend: Any, tenant: str, employee_id: str) -> Outcome:
    return await author_one(backend, tenant, Draft.command(EMPLOYEES, employee_id, "deactivate"))


async def set_employee_pin(
    backend: Any, tenant: str, employee_id: str, pin: str, now_ms: int
) -> Outcome:
    """Store the PIN's hash (never in a record) and mark ``pin_set`` on the employee."""
    _require_staff(backend)
    rows = await backend.load(tenant, [(EMPLOYEES, employee_id)])
    record = rows.get((EMPLOYEES, employee_id))
    if record is None or record.deleted:
        raise UnknownEmployeeError(f"no employee {employee_id!r} in tenant {tenant!r}")
    await StaffSecrets(backend.accounts.db).set_pin(tenant, employee_id, pin, now_ms)
    return await author_one(
        backend,
        tenant,
        Draft.command(EMPLOYEES, employee_id, "pin_changed", {"pin_set": True}),
    )


async def list_employees(backend: Any, tenant: str) -> list[dict[str, Any]]:
    records = await backend.records(tenant, EMPLOYEES)
    return [
        {"employee_id": r.record_id, **{k: r.fields[k] for k in sorted(r.fields)}}
        for r in records
        if not r.deleted
    ]


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def audit(backend: Any, tenant: str, actor: str | None) -> list[dict[str, Any]]:
    """Every op of the tenant's op log made by ``actor`` (or by anyone), in node and seq
    order, with the record it changed when it changed one (from the feed)."""
    store = backend.store
    targets: dict[tuple[str, int], tuple[str, str]] = {}
    cursor = 0
    while True:
        changes = await _maybe(store.changes(tenant, cursor, 1000))
        for change in changes:
            record = change.record
            key = (change.node_id, change.node_seq)
            targets.setdefault(key, (record.collection, record.record_id))
        if len(changes) < 1000:
            break
        cursor = changes[-1].seq
    out: list[dict[str, Any]] = []
    nodes = await _maybe(store.high_waters(tenant))
    for node in sorted(nodes):
        for outcome in await _maybe(store.op_log(tenant, node)):
            who = outcome.actor if isinstance(outcome.actor, str) else None
            if actor is not None and who != actor:
                continue
            target = targets.get((node, outcome.seq))
            out.append(
                {
                    "node_id": node,
                    "seq": outcome.seq,
                    "op_id": outcome.op_id,
                    "actor": who,
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "collection": None if target is None else target[0],
                    "record_id": None if target is None else target[1],
                }
            )
    return out


def run_admin(settings: Any, job: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database ``settings`` names (migrated, plugins from FYNLO_PLUGINS), run
    ``job(backend)``, close it."""
    from server.app import registry_from
    from server.backends import open_backend

    async def main() -> T:
        backend = await open_backend(
            settings, registry_from(settings), _wall_ms, _ignore, migrate=True
        )
        try:
            await StaffSecrets(backend.accounts.db).migrate()
            return await job(backend)
        finally:
            await backend.close()

    return anyio.run(main)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _ignore(tenant: str, cursor: int) -> None:
    pass


async def labour(backend: Any, tenant: str, week: str) -> Any:
    """The labour report of ``week`` from the tenant's timecards and employees."""
    from fynlo_sync.domains.timeclock.report import labour_report

    _require_staff(backend)
    return labour_report(
        week, await backend.records(tenant, "timecards"), await backend.records(tenant, EMPLOYEES)
    )
