"""The manual conflict queue over HTTP: list parked conflicts, resolve one.

The resolution is decided by :func:`fynlo_sync.resolution.resolution` under the tenant's
lock and authored as node ``server`` through the backend's one authoring path (the same
engine, feed and pokes as a terminal's push).
"""

from __future__ import annotations

from collections.abc import Mapping

from fynlo_sync.errors import ConflictNotFoundError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import CONFLICTS, Draft
from fynlo_sync.protocol import PushResult
from fynlo_sync.replica import Compose
from fynlo_sync.resolution import ResolveRequest, resolution
from fynlo_sync.store.base import Key
from server.backends import Backend

__all__ = ["ResolveRequest", "list_conflicts", "resolve_conflict"]


async def list_conflicts(backend: Backend, tenant: str, state: str = "open") -> list[Record]:
    rows = await backend.records(tenant, CONFLICTS)
    return [r for r in rows if not r.deleted and (state == "all" or r.fields.get("state") == state)]


async def resolve_conflict(
    backend: Backend, tenant: str, conflict_id: str, request: ResolveRequest
) -> PushResult:
    """Resolve a parked conflict as the server node."""
    if not conflict_id or len(conflict_id) > 128 or "\x00" in conflict_id:
        # Not an identifier, so no conflict has it (and PostgreSQL refuses NUL in text).
        raise ConflictNotFoundError(f"no conflict {conflict_id!r}", conflict_id=conflict_id)

    def build(rows: Mapping[Key, Record]) -> list[Draft]:
        return resolution(conflict_id, request, rows, backend.new_op_id)

    return await backend.author(tenant, Compose([(CONFLICTS, conflict_id)], build))
