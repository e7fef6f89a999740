"""The manual conflict queue over HTTP: list parked conflicts, resolve one.

The resolution is decided by :func:`fynlo_sync.resolution.resolution` under the tenant's
lock and authored as node ``server`` through the backend's one authoring path (the same
engine, feed and pokes as a terminal's push).
"""

from __future__ import annotations

from collections.abc import Mapping

from fynlo_sync.errors import ConflictNotFoundError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import CONFLICTS, Draft, Registry
from fynlo_sync.protocol import PushResult
from fynlo_sync.replica import Compose
from fynlo_sync.resolution import ResolveRequest, resolution
from fynlo_sync.store.base import Key
from server.backends import Backend
from server.permissions import require_permission_in

__all__ = ["ResolveRequest", "list_conflicts", "resolve_conflict"]


async def list_conflicts(backend: Backend, tenant: str, state: str = "open") -> list[Record]:
    rows = await backend.records(tenant, CONFLICTS)
    return [r for r in rows if not r.deleted and (state == "all" or r.fields.get("state") == state)]


async def resolve_conflict(
    backend: Backend, tenant: str, conflict_id: str, request: ResolveRequest, registry: Registry
) -> PushResult:
    """Resolve a parked conflict as the server node, for ``request.actor`` (who needs
    ``conflict.resolve`` when ``registry`` checks actors: 403 ``forbidden`` otherwise)."""
    if not conflict_id or len(conflict_id) > 128 or "\x00" in conflict_id:
        # Not an identifier, so no conflict has it (and PostgreSQL refuses NUL in text).
        raise ConflictNotFoundError(f"no conflict {conflict_id!r}", conflict_id=conflict_id)

    policy = registry.actor_policy
    actor_key = None
    if policy is not None and request.actor is not None:
        actor_key = (policy.collection, request.actor)
    keys: list[Key] = [(CONFLICTS, conflict_id)] + ([] if actor_key is None else [actor_key])

    def build(rows: Mapping[Key, Record]) -> list[Draft]:
        # Checked before any op is drafted (under the tenant's lock): a forbidden resolver
        # must not get the chosen version applied with the resolve op refused after it.
        drafts = resolution(conflict_id, request, rows, backend.new_op_id)
        if policy is not None:
            record = None if actor_key is None else rows.get(actor_key)
            require_permission_in(registry, request.actor, record, "conflict.resolve")
        return drafts

    return await backend.author(tenant, Compose(keys, build))
