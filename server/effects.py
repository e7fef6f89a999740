"""Durable effects over HTTP: a manager's device (one enrolled with ``--role manager``) lists
its tenant's effects, above all the dead ones (``GET /v1/effects?state=dead``); any other
device gets 403 ``not-permitted`` (effect payloads are not every till's business). Operators
retry them with ``fynlo effects retry`` (:mod:`server.admin`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from msgspec import Struct

from fynlo_sync.effects import EffectRow
from server.accounts import NotPermittedError

__all__ = ["AttemptView", "EffectList", "EffectView", "effect_view", "list_effects"]


class AttemptView(Struct, frozen=True):
    attempt: int
    started_ms: int
    finished_ms: int | None
    result: str | None
    error: str | None


class EffectView(Struct, frozen=True):
    """One effect of the outbox, with every attempt (``result`` null: it is running, or
    its worker died and the lease ran out)."""

    key: str
    plugin: str
    name: str
    state: str
    attempts: int
    failures: int
    due_ms: int
    created_ms: int
    last_error: str | None
    payload: dict[str, Any]
    history: list[AttemptView]


class EffectList(Struct, frozen=True):
    effects: list[EffectView]


def effect_view(row: EffectRow) -> EffectView:
    return EffectView(
        key=row.key,
        plugin=row.effect.plugin,
        name=row.effect.name,
        state=row.state,
        attempts=row.attempts,
        failures=row.failures,
        due_ms=row.due_ms,
        created_ms=row.created_ms,
        last_error=row.last_error,
        payload=dict(row.effect.payload),
        history=[
            AttemptView(a.attempt, a.started_ms, a.finished_ms, a.result, a.error)
            for a in row.history
        ],
    )


@get("/v1/effects", tags=["effects"])
async def list_effects(
    request: Request[Any, Any, Any],
    rt: NamedDependency[Any],
    which: Annotated[
        Literal["pending", "running", "done", "dead"] | None,
        QueryParameter(name="state", description="only effects in this state (dead: failed)"),
    ] = None,
) -> EffectList:
    """The tenant's durable effects (the outbox) with every attempt, by key. A manager's
    device only (403 ``not-permitted`` otherwise)."""
    device = request.user
    state = await rt.backend.accounts.device(device.tenant_id, device.node_id)
    if state is None or state.role != "manager":
        raise NotPermittedError(
            "only a manager's device may list the tenant's effects", required="manager"
        )
    rows = await rt.backend.effect_rows(device.tenant_id, which)
    return EffectList([effect_view(row) for row in rows])
