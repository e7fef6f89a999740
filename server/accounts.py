"""Tenants, devices, enrollment codes and refresh tokens: the server's own tables.

* An **enrollment code** (``<code_id>.<secret>``) names one device of one tenant. It is used
  once and expires; only an argon2 hash of its secret is stored.
* Redeeming it starts the device's **token chain**: the device's ``epoch`` goes up by one,
  and a refresh token of that epoch is issued. Each refresh uses the token up and issues the
  next. Presenting a used refresh token again (reuse: the token was copied) revokes the whole
  chain (``epoch`` goes up, every token of the device is used up): the device must enroll
  again.
* Access tokens carry the epoch they were issued under; a request whose token's epoch is not
  the device's current one, or whose device is revoked, is refused at once.
* Refresh tokens are 256-bit random strings, stored as their SHA-256.
* A rotation is atomic on every backend: the token's row is locked (a no-op ``UPDATE``,
  which PostgreSQL row-locks and SQLite runs under its one writer) before it is read, so two
  simultaneous refreshes of one token are decided one after the other.
* **Grace window.** Presenting a token again within ``refresh_grace_s`` of its rotation,
  while its successor is still unused, is the retry of a rotation whose answer was lost (a
  flaky Wi-Fi): the successor is used up and a new one issued in its place, so the chain
  never has two live tokens. Outside the window, or once the successor was used, it is
  reuse: the chain is revoked.
* A chain lives at most ``refresh_max_lifetime_s`` from its enrollment; then the device
  enrolls again.
* A **WebSocket ticket** (``wt_`` and 256 random bits, stored as its SHA-256) stands for
  one device's access token on one WebSocket upgrade, so no token is put in a URL: it is
  issued to an authenticated device, used up atomically on first presentation (a
  conditional ``UPDATE``: of two simultaneous uses exactly one wins), and expires after
  ``ticket_ttl_s``. It carries the device's epoch, so revoking the device or ending its
  chain kills its unused tickets too.

The logic is written once over :class:`~fynlo_sync.store.sqlport.SqlPort` (PostgreSQL or SQLite).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fynlo_sync.errors import CallerError, UnauthenticatedError
from fynlo_sync.store.migrations import Component
from fynlo_sync.store.sqlport import SqlConn, SqlPort

__all__ = [
    "ACCOUNTS",
    "ACCOUNT_MIGRATIONS",
    "DEVICE_ROLES",
    "Accounts",
    "DeviceNotFoundError",
    "DeviceState",
    "Enrollment",
    "Grant",
    "NotPermittedError",
    "TenantNotFoundError",
    "TicketHolder",
]

#: Versioned migrations of the account tables (portable SQL). Append; never edit one.
ACCOUNT_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE fynlo_tenants (
        tenant_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE fynlo_devices (
        tenant_id TEXT NOT NULL REFERENCES fynlo_tenants (tenant_id),
        node_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT,
        PRIMARY KEY (tenant_id, node_id)
    );
    CREATE TABLE fynlo_enrollments (
        code_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        expires_ms BIGINT NOT NULL,
        used_ms BIGINT
    );
    CREATE TABLE fynlo_refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_ms BIGINT NOT NULL,
        used_ms BIGINT
    );
    CREATE INDEX fynlo_refresh_tokens_device ON fynlo_refresh_tokens (tenant_id, node_id)
    """,
    # A rotated token remembers its successor (so a retry within the grace window replaces
    # it instead of forking the chain); every token knows when its chain began (the
    # chain's maximum lifetime).
    """
    ALTER TABLE fynlo_refresh_tokens ADD COLUMN successor_hash TEXT;
    ALTER TABLE fynlo_refresh_tokens ADD COLUMN chain_ms BIGINT;
    ALTER TABLE fynlo_enrollments ADD COLUMN failures INTEGER NOT NULL DEFAULT 0
    """,
    # One-time WebSocket tickets (section 7): stored as their SHA-256, used once, short-lived.
    """
    CREATE TABLE fynlo_ws_tickets (
        ticket_hash TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_ms BIGINT NOT NULL,
        used_ms BIGINT
    );
    CREATE INDEX fynlo_ws_tickets_expiry ON fynlo_ws_tickets (expires_ms)
    """,
    # A device's role: `terminal` (a till) or `manager` (a back-office device, which may
    # also read the tenant's effects).
    """
    ALTER TABLE fynlo_devices ADD COLUMN role TEXT NOT NULL DEFAULT 'terminal'
    """,
)

#: The account tables' component (the same SQL on SQLite and PostgreSQL).
ACCOUNTS = Component("accounts", ACCOUNT_MIGRATIONS)
T = TypeVar("T")

#: A device's roles: a till syncs; a manager's device may also read the tenant's effects.
DEVICE_ROLES = ("terminal", "manager")

#: Node ids the server keeps for itself (it authors conflict resolutions as ``server``).
RESERVED_NODES = frozenset({"server"})

# OWASP's minimum argon2id settings: the secrets are random, the hash only guards a leak.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class TenantNotFoundError(CallerError):
    code = "tenant-not-found"
    status = 404


class DeviceNotFoundError(CallerError):
    code = "device-not-found"
    status = 404


class NotPermittedError(CallerError):
    """The device's role does not allow this route (``required``: the role it needs)."""

    code = "not-permitted"
    status = 403


@dataclass(frozen=True, slots=True)
class Enrollment:
    tenant_id: str
    node_id: str
    enrollment_code: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Grant:
    """A device's new credentials: issue an access token of ``epoch`` beside the refresh
    token."""

    tenant_id: str
    node_id: str
    epoch: int
    refresh_token: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    tenant_id: str
    node_id: str
    epoch: int
    revoked: bool
    role: str = "terminal"


@dataclass(frozen=True, slots=True)
class TicketHolder:
    """Whom a used WebSocket ticket authenticates: a device, under the chain ``epoch``."""

    tenant_id: str
    node_id: str
    epoch: int


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Account operations, each one transaction. ``now_ms`` is the injected wall clock."""

    def __init__(
        self,
        db: SqlPort,
        *,
        now_ms: Callable[[], int],
        enrollment_ttl_s: int = 24 * 3600,
        refresh_ttl_s: int = 30 * 24 * 3600,
        refresh_grace_s: int = 30,
        refresh_max_lifetime_s: int = 180 * 24 * 3600,
        max_code_failures: int = 5,
        ticket_ttl_s: int = 30,
    ) -> None:
        self.db = db
        self.now_ms = now_ms
        self.enrollment_ttl_ms = enrollment_ttl_s * 1000
        self.refresh_ttl_ms = refresh_ttl_s * 1000
        self.refresh_grace_ms = refresh_grace_s * 1000
        self.refresh_max_lifetime_ms = refresh_max_lifetime_s * 1000
        self.max_code_failures = max_code_failures
        self.ticket_ttl_ms = ticket_ttl_s * 1000
        self._argon2: anyio.CapacityLimiter | None = None

    async def _argon2_call(self, fn: Callable[..., T], *args: Any) -> T:
        """argon2 (19 MiB, tens of ms) on a worker thread, two at a time: never on the event
        loop, where every other request would wait for it."""
        if self._argon2 is None:
            self._argon2 = anyio.CapacityLimiter(2)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._argon2)

    async def migrate(self) -> list[int]:
        return await self.db.migrate(ACCOUNTS)

    async def create_tenant(self, name: str, tenant_id: str | None = None) -> str:
        tenant = tenant_id or "t_" + secrets.token_hex(8)
        if not name or not tenant or len(tenant) > 128 or "\x00" in tenant + name:
            raise CallerError("a tenant needs a name and an id of 1 to 128 characters")
        changed = await self.db.execute(
            "INSERT INTO fynlo_tenants (tenant_id, name, created_ms) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            tenant,
            name,
            self.now_ms(),
        )
        if not changed:
            raise CallerError(f"tenant {tenant!r} already exists", tenant_id=tenant)
        return tenant

    async def tenants(self) -> list[tuple[str, str]]:
        rows = await self.db.fetch("SELECT tenant_id, name FROM fynlo_tenants ORDER BY tenant_id")
        return [(str(r[0]), str(r[1])) for r in rows]

    async def enroll(
        self, tenant_id: str, node_id: str | None = None, role: str | None = None
    ) -> Enrollment:
        """A one-use enrollment code for a new device (or for ``node_id`` again, e.g. a
        terminal whose chain was revoked for reuse; a revoked device stays revoked).
        ``role`` (:data:`DEVICE_ROLES`; default ``terminal``) is the device's, and given
        for an existing device it replaces its role."""
        node = node_id or "n_" + secrets.token_hex(8)
        if node in RESERVED_NODES or len(node) > 64 or "\x00" in node:
            raise CallerError(f"node id {node!r} is reserved or too long", node_id=node)
        if role is not None and role not in DEVICE_ROLES:
            raise CallerError(f"role {role!r}: use one of {', '.join(DEVICE_ROLES)}", role=role)
        code_id, secret = secrets.token_hex(6), secrets.token_urlsafe(15)
        secret_hash = await self._argon2_call(_hasher.hash, secret)
        now = self.now_ms()
        async with self.db.transaction() as tx:
            if (
                await tx.fetchrow("SELECT 1 FROM fynlo_tenants WHERE tenant_id = $1", tenant_id)
                is None
            ):
                raise TenantNotFoundError(f"no tenant {tenant_id!r}", tenant_id=tenant_id)
            row = await tx.fetchrow(
                "SELECT revoked_ms FROM fynlo_devices WHERE tenant_id = $1 AND node_id = $2",
                tenant_id,
                node,
            )
            if row is None:
                await tx.execute(
                    "INSERT INTO fynlo_devices (tenant_id, node_id, epoch, created_ms, role)"
                    " VALUES ($1, $2, 0, $3, $4)",
                    tenant_id,
                    node,
                    now,
                    role or "terminal",
                )
            elif row[0] is not None:
                raise CallerError(f"device {node!r} is revoked; enroll a new one", node_id=node)
            elif role is not None:
                await tx.execute(
                    "UPDATE fynlo_devices SET role = $3 WHERE tenant_id = $1 AND node_id = $2",
                    tenant_id,
                    node,
                    role,
                )
            expires = now + self.enrollment_ttl_ms
            await tx.execute(
                "INSERT INTO fynlo_enrollments (code_id, tenant_id, node_id, secret_hash,"
                " expires_ms) VALUES ($1, $2, $3, $4, $5)",
                code_id,
                tenant_id,
                node,
                secret_hash,
                expires,
            )
        return Enrollment(tenant_id, node, f"{code_id}.{secret}", expires)

    async def redeem(self, code: str) -> Grant:
        """Use an enrollment code: start the device's token chain."""
        code_id, _, secret = code.partition(".")
        refused = UnauthenticatedError("the enrollment code is unknown, used or expired")
        if not code_id or len(code_id) > 64 or "\x00" in code_id:
            raise refused  # never a code id (PostgreSQL refuses NUL in text)
        now = self.now_ms()
        row = await self.db.fetchrow(
            "SELECT secret_hash, expires_ms, used_ms, failures FROM fynlo_enrollments"
            " WHERE code_id = $1",
            code_id,
        )
        if row is None or row[2] is not None or row[1] <= now:
            raise refused
        if row[3] >= self.max_code_failures:
            raise UnauthenticatedError(
                "the enrollment code is locked after too many wrong secrets; make a new one",
                reason="code-locked",
            )
        try:
            await self._argon2_call(_hasher.verify, row[0], secret)
        except (VerificationError, InvalidHashError):
            # Counted per code id, so guessing one code's secret is bounded (the counter
            # is not in the redeeming transaction: a refusal commits it).
            await self.db.execute(
                "UPDATE fynlo_enrollments SET failures = failures + 1 WHERE code_id = $1",
                code_id,
            )
            raise refused from None
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT tenant_id, node_id, expires_ms, used_ms"
                " FROM fynlo_enrollments WHERE code_id = $1",
                code_id,
            )
            if row is None or row[3] is not None or row[2] <= now:
                raise refused
            tenant, node = str(row[0]), str(row[1])
            used = await tx.execute(
                "UPDATE fynlo_enrollments SET used_ms = $2 WHERE code_id = $1 AND used_ms IS NULL",
                code_id,
                now,
            )
            if not used:
                raise refused
            return await self._new_chain(tx, tenant, node, now, refused)

    async def _new_chain(
        self, tx: SqlConn, tenant: str, node: str, now: int, refused: UnauthenticatedError
    ) -> Grant:
        changed = await tx.execute(
            "UPDATE fynlo_devices SET epoch = epoch + 1"
            " WHERE tenant_id = $1 AND node_id = $2 AND revoked_ms IS NULL",
            tenant,
            node,
        )
        if not changed:
            raise refused
        await self._use_up(tx, tenant, node, now)
        row = await tx.fetchrow(
            "SELECT epoch FROM fynlo_devices WHERE tenant_id = $1 AND node_id = $2", tenant, node
        )
        assert row is not None
        return await self._issue(tx, tenant, node, int(row[0]), now, now)

    async def _use_up(self, tx: SqlConn, tenant: str, node: str, now: int) -> None:
        await tx.execute(
            "UPDATE fynlo_refresh_tokens SET used_ms = $3"
            " WHERE tenant_id = $1 AND node_id = $2 AND used_ms IS NULL",
            tenant,
            node,
            now,
        )

    async def _issue(
        self, tx: SqlConn, tenant: str, node: str, epoch: int, now: int, chain_ms: int
    ) -> Grant:
        token = "rt_" + secrets.token_urlsafe(32)
        await tx.execute(
            "INSERT INTO fynlo_refresh_tokens (token_hash, tenant_id, node_id, epoch,"
            " expires_ms, chain_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            _sha256(token),
            tenant,
            node,
            epoch,
            now + self.refresh_ttl_ms,
            chain_ms,
        )
        return Grant(tenant, node, epoch, token)

    async def refresh(self, token: str) -> Grant:
        """Rotate a refresh token (atomically: see the module's docstring). Reuse of a used
        one revokes the device's chain (committed before the refusal is raised); a retry
        within the grace window replaces the successor instead."""
        now = self.now_ms()
        digest = _sha256(token)
        reused = False
        async with self.db.transaction() as tx:
            # Lock the token's row first: a concurrent rotation of the same token waits
            # here, then reads what the first one committed.
            await tx.execute(
                "UPDATE fynlo_refresh_tokens SET used_ms = used_ms WHERE token_hash = $1",
                digest,
            )
            row = await tx.fetchrow(
                "SELECT t.tenant_id, t.node_id, t.epoch, t.expires_ms, t.used_ms, d.epoch,"
                " d.revoked_ms, t.successor_hash, t.chain_ms FROM fynlo_refresh_tokens t"
                " JOIN fynlo_devices d ON d.tenant_id = t.tenant_id AND d.node_id = t.node_id"
                " WHERE t.token_hash = $1",
                digest,
            )
            if row is None:
                raise UnauthenticatedError("the refresh token is unknown")
            tenant, node, epoch = str(row[0]), str(row[1]), int(row[2])
            chain_ms = now if row[8] is None else int(row[8])
            if row[6] is not None:
                raise UnauthenticatedError("the device is revoked")
            if epoch != row[5]:
                raise UnauthenticatedError("the refresh token's chain was ended")
            if row[4] is not None:
                successor = None if row[7] is None else str(row[7])
                if now - int(row[4]) <= self.refresh_grace_ms and successor is not None:
                    # A retry of a rotation whose answer was lost: the successor it was
                    # never told about is used up, and a new one takes its place.
                    replaced = await tx.execute(
                        "UPDATE fynlo_refresh_tokens SET used_ms = $2"
                        " WHERE token_hash = $1 AND used_ms IS NULL",
                        successor,
                        now,
                    )
                    if replaced:
                        grant = await self._rotate(tx, digest, tenant, node, epoch, now, chain_ms)
                        return grant
                # Reuse: someone holds a copy. End the chain; the device must enroll again.
                await tx.execute(
                    "UPDATE fynlo_devices SET epoch = epoch + 1"
                    " WHERE tenant_id = $1 AND node_id = $2",
                    tenant,
                    node,
                )
                await self._use_up(tx, tenant, node, now)
                reused = True
            elif row[3] <= now:
                raise UnauthenticatedError("the refresh token has expired")
            elif now - chain_ms >= self.refresh_max_lifetime_ms:
                raise UnauthenticatedError(
                    "the device's token chain reached its maximum lifetime: enroll it again",
                    reason="chain-expired",
                )
            else:
                grant = await self._rotate(tx, digest, tenant, node, epoch, now, chain_ms)
        if reused:
            raise UnauthenticatedError(
                "the refresh token was already used: the device's tokens are revoked; "
                "enroll it again",
                reason="refresh-token-reused",
            )
        return grant

    async def _rotate(
        self,
        tx: SqlConn,
        digest: str,
        tenant: str,
        node: str,
        epoch: int,
        now: int,
        chain_ms: int,
    ) -> Grant:
        grant = await self._issue(tx, tenant, node, epoch, now, chain_ms)
        await tx.execute(
            "UPDATE fynlo_refresh_tokens SET used_ms = COALESCE(used_ms, $2), successor_hash = $3"
            " WHERE token_hash = $1",
            digest,
            now,
            _sha256(grant.refresh_token),
        )
        return grant

    async def issue_ticket(self, tenant_id: str, node_id: str, epoch: int) -> str:
        """A one-time WebSocket ticket for this device (its access token's ``epoch``).
        Tickets that expired more than a minute ago are deleted on the way."""
        now = self.now_ms()
        ticket = "wt_" + secrets.token_urlsafe(32)
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM fynlo_ws_tickets WHERE expires_ms < $1", now - 60_000)
            await tx.execute(
                "INSERT INTO fynlo_ws_tickets (ticket_hash, tenant_id, node_id, epoch,"
                " expires_ms) VALUES ($1, $2, $3, $4, $5)",
                _sha256(ticket),
                tenant_id,
                node_id,
                epoch,
                now + self.ticket_ttl_ms,
            )
        return ticket

    async def use_ticket(self, ticket: str) -> TicketHolder:
        """Use a WebSocket ticket up (once, atomically) and say whose it is; refused (401,
        ``reason`` ``ticket-unknown``, ``ticket-used``, ``ticket-expired``) otherwise, or
        when its device was revoked or its chain ended since it was issued."""
        if not ticket.startswith("wt_") or len(ticket) > 128 or "\x00" in ticket:
            raise UnauthenticatedError("the WebSocket ticket is unknown", reason="ticket-unknown")
        now = self.now_ms()
        digest = _sha256(ticket)
        async with self.db.transaction() as tx:
            used = await tx.execute(
                "UPDATE fynlo_ws_tickets SET used_ms = $2"
                " WHERE ticket_hash = $1 AND used_ms IS NULL AND expires_ms > $2",
                digest,
                now,
            )
            row = await tx.fetchrow(
                "SELECT t.tenant_id, t.node_id, t.epoch, t.used_ms, d.epoch, d.revoked_ms"
                " FROM fynlo_ws_tickets t JOIN fynlo_devices d"
                " ON d.tenant_id = t.tenant_id AND d.node_id = t.node_id"
                " WHERE t.ticket_hash = $1",
                digest,
            )
        if row is None:
            raise UnauthenticatedError("the WebSocket ticket is unknown", reason="ticket-unknown")
        if not used:
            if row[3] is not None:
                raise UnauthenticatedError(
                    "the WebSocket ticket was already used: get a new one", reason="ticket-used"
                )
            raise UnauthenticatedError(
                "the WebSocket ticket has expired: get a new one", reason="ticket-expired"
            )
        if row[5] is not None or int(row[2]) != int(row[4]):
            raise UnauthenticatedError("the device's tokens are revoked")
        return TicketHolder(str(row[0]), str(row[1]), int(row[2]))

    async def revoke(self, tenant_id: str, node_id: str) -> None:
        """Cut a device off at once: its access and refresh tokens stop working."""
        now = self.now_ms()
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE fynlo_devices SET revoked_ms = $3, epoch = epoch + 1"
                " WHERE tenant_id = $1 AND node_id = $2",
                tenant_id,
                node_id,
                now,
            )
            if not changed:
                raise DeviceNotFoundError(
                    f"no device {node_id!r} in tenant {tenant_id!r}",
                    tenant_id=tenant_id,
                    node_id=node_id,
                )
            await self._use_up(tx, tenant_id, node_id, now)
            await tx.execute(
                "UPDATE fynlo_enrollments SET used_ms = $3"
                " WHERE tenant_id = $1 AND node_id = $2 AND used_ms IS NULL",
                tenant_id,
                node_id,
                now,
            )

    async def device(self, tenant_id: str, node_id: str) -> DeviceState | None:
        row = await self.db.fetchrow(
            "SELECT epoch, revoked_ms, role FROM fynlo_devices"
            " WHERE tenant_id = $1 AND node_id = $2",
            tenant_id,
            node_id,
        )
        if row is None:
            return None
        return DeviceState(tenant_id, node_id, int(row[0]), row[1] is not None, str(row[2]))

    async def devices(self, tenant_id: str) -> list[DeviceState]:
        rows = await self.db.fetch(
            "SELECT node_id, epoch, revoked_ms, role FROM fynlo_devices WHERE tenant_id = $1"
            " ORDER BY node_id",
            tenant_id,
        )
        return [
            DeviceState(tenant_id, str(r[0]), int(r[1]), r[2] is not None, str(r[3])) for r in rows
        ]
