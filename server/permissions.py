"""Permissions on the server's own routes: the actor check of protocol 20.1 for a route
that acts for an employee (a manager approving on a terminal names themselves, as an op's
``actor`` does).

One call for every route that needs a permission (time clock approvals, conflict
resolution, and any plugin's route)::

    await require_permission(backend, tenant, actor, "timeclock.approve")

raises :class:`~fynlo_sync.errors.ForbiddenError` (403 ``forbidden``, its ``permission``
member naming what was needed) unless ``actor`` is an active employee of the tenant who
holds it. A route that then authors ops for the actor puts ``actor`` on its drafts, so the
engine checks again under the tenant's lock and the op log keeps who it was.
"""

from __future__ import annotations

from typing import Any

from fynlo_sync.engine import check_permission
from fynlo_sync.errors import ForbiddenError, RejectedOpError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Registry

__all__ = ["forbidden_from", "require_permission", "require_permission_in"]


def forbidden_from(exc: RejectedOpError) -> ForbiddenError:
    return ForbiddenError(exc.detail, permission=exc.extra.get("permission"))


def require_permission_in(
    registry: Registry, actor: str | None, record: Record | None, permission: str
) -> None:
    """:func:`require_permission` against a record already loaded (inside a ``Compose``'s
    build, under the tenant's lock)."""
    try:
        check_permission(registry, actor, record, permission)
    except RejectedOpError as exc:
        raise forbidden_from(exc) from None


async def require_permission(backend: Any, tenant: str, actor: str | None, permission: str) -> None:
    """Raise ForbiddenError unless ``actor`` may use ``permission`` in ``tenant`` (no-op
    when no plugin checks actors)."""
    registry: Registry = backend.replica.registry
    policy = registry.actor_policy
    if policy is None:
        return
    record = None
    if actor is not None:
        rows = await backend.load(tenant, [(policy.collection, actor)])
        record = rows.get((policy.collection, actor))
    require_permission_in(registry, actor, record, permission)
